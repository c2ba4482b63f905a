"""Domain models: what the website sends, and the operations made of it."""

from crm_bridge.envelope import SCHEMA_VERSION, Channel, OperationKind, Origin
from crm_bridge.models.application import Application, PersonName, UserType
from crm_bridge.models.attribution import Attribution
from crm_bridge.models.messenger import MessengerActivity, MessengerEvent
from crm_bridge.models.operation import (
    MessengerClickOperation,
    Operation,
    UpsertLeadOperation,
    dump_operation,
    parse_operation,
)

__all__ = [
    "SCHEMA_VERSION",
    "Application",
    "Attribution",
    "Channel",
    "MessengerActivity",
    "MessengerClickOperation",
    "MessengerEvent",
    "Operation",
    "OperationKind",
    "Origin",
    "PersonName",
    "UpsertLeadOperation",
    "UserType",
    "dump_operation",
    "parse_operation",
]
