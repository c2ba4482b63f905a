"""What the whole-CRM move knows of each side before it writes: the portal's schema and EspoCRM's.

The Bitrix24 side is read from ``crm.*.fields``, ``crm.*.userfield.list``, ``crm.status.list``,
``crm.category.list`` and ``user.get`` (``migrate/bitrix24_portal.py``); the EspoCRM side from its
metadata and users (``migrate/espocrm_target.py``). The plan (``migrate/plan.py``) places every
field of the first in the second; provisioning creates what the plan asks for. These types are the
contract between the three, so each can be built and tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class SourceEntity(StrEnum):
    """The portal's record kinds the move reads, in the order it writes them (links point backwards)."""

    COMPANY = "company"
    CONTACT = "contact"
    DEAL = "deal"
    LEAD = "lead"
    ACTIVITY = "activity"


TARGET_ENTITY: Mapping[SourceEntity, str] = {
    SourceEntity.COMPANY: "Account",
    SourceEntity.CONTACT: "Contact",
    SourceEntity.DEAL: "Opportunity",
    SourceEntity.LEAD: "Lead",
}
"""Where each kind goes; an activity goes to Call, Meeting, Task or Email by its ``TYPE_ID``."""

ACTIVITY_TARGETS: Mapping[str, str] = {"1": "Meeting", "2": "Call", "3": "Task", "4": "Email", "6": "Task"}
"""crm.activity ``TYPE_ID`` (1 meeting, 2 call, 3 task, 4 e-mail, 6 provider/to-do) → EspoCRM entity."""


def activity_target(type_id: object) -> str:
    """The EspoCRM entity an activity of this ``TYPE_ID`` goes to: a Task for a type the table does not name."""
    return ACTIVITY_TARGETS.get(str(type_id or ""), "Task")


class Semantics(StrEnum):
    """A stage's meaning, which its name does not carry: Bitrix24's ``SEMANTICS`` (empty, S, F)."""

    PROCESS = "process"
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class Option:
    """One item of a list field: the id a record holds (``"61"``) and the label people see."""

    id: str
    label: str


@dataclass(frozen=True)
class SourceField:
    """A field of a portal entity as ``crm.*.fields`` (and, for ``UF_CRM_*``, ``userfield.list``) describe it."""

    name: str
    """Bitrix24's name: ``TITLE``, ``IM``, ``UF_CRM_1700000000123``."""
    type: str
    """Bitrix24's type: string, integer, double, boolean, date, datetime, enumeration, money, file,
    crm, crm_status, crm_multifield, user, url, address, crm_currency, crm_category, ..."""
    title: str
    """The label the portal shows (a user field's ``listLabel``/``formLabel``, else ``title``)."""
    multiple: bool = False
    custom: bool = False
    """A user field (``UF_CRM_*``)."""
    read_only: bool = False
    options: tuple[Option, ...] = ()
    """Items of an enumeration; of a crm_status field, the statuses of its ``statusType``."""
    settings: Mapping[str, object] = field(default_factory=dict)
    """The type's settings as the portal gives them (a crm binding's entity types, a status type)."""


@dataclass(frozen=True)
class Stage:
    id: str
    """``STATUS_ID``: ``NEW``, ``UC_4ZK2BQ``, ``C1:PREPARATION``."""
    name: str
    semantics: Semantics
    sort: int


@dataclass(frozen=True)
class Pipeline:
    """A deal category (``crm.category.list``) with its stages (``DEAL_STAGE`` or ``DEAL_STAGE_<id>``)."""

    id: str
    name: str
    stages: tuple[Stage, ...]
    default: bool = False


@dataclass(frozen=True)
class SourceUser:
    id: str
    name: str
    email: str | None
    active: bool
    """False: the person left (``ACTIVE`` N); their records need another owner."""


@dataclass(frozen=True)
class SourceSchema:
    fields: Mapping[SourceEntity, Mapping[str, SourceField]]
    lead_statuses: tuple[Stage, ...]
    pipelines: tuple[Pipeline, ...]
    users: tuple[SourceUser, ...]
    statuses: Mapping[str, tuple[Option, ...]] = field(default_factory=dict)
    """Other status lists by ``ENTITY_ID`` (SOURCE, CONTACT_TYPE, COMPANY_TYPE, INDUSTRY, HONORIFIC...)."""


@dataclass(frozen=True)
class TargetField:
    """A field of an EspoCRM entity as its metadata (``entityDefs``) describes it."""

    name: str
    type: str
    """EspoCRM's type: varchar, text, enum, multiEnum, int, float, currency, bool, date, datetime,
    link, linkMultiple, file, attachmentMultiple, phone, email, address, personName, url, ..."""
    label: str = ""
    options: tuple[str, ...] = ()
    custom: bool = False
    read_only: bool = False


@dataclass(frozen=True)
class TargetUser:
    id: str
    user_name: str
    name: str
    email: str | None
    active: bool


@dataclass(frozen=True)
class TargetSchema:
    fields: Mapping[str, Mapping[str, TargetField]]
    """EspoCRM entity (``Lead``, ``Account``...) → field name → field."""
    users: tuple[TargetUser, ...]


@dataclass(frozen=True)
class CustomField:
    """A field the plan needs and EspoCRM lacks: provisioning creates it before the move writes."""

    entity: str
    name: str
    """EspoCRM's attribute name (``c`` + the camel-cased Bitrix24 name is EspoCRM's own convention)."""
    type: str
    label: str
    options: tuple[str, ...] = ()
    source_field: str = ""
    """The Bitrix24 field it holds, for the plan's report."""
    foreign_entity: str = ""
    """A ``link`` field only: the entity it points to (a Bitrix24 ``crm`` binding: ``Contact``, ``Account``)."""


@dataclass(frozen=True)
class EnumOptions:
    """Options an existing enum (``Lead.status``, ``Opportunity.stage``) needs for the portal's stages."""

    entity: str
    attribute: str
    options: tuple[str, ...]
    probabilities: Mapping[str, int] = field(default_factory=dict)
    """Opportunity stages only: won 100, lost 0, in progress by position (EspoCRM's ``probabilityMap``)."""
    not_actual: tuple[str, ...] = ()
    """Options that close a record (EspoCRM's ``notActualOptions``: ``Lead.status``'s "Dead" and the
    portal's won and lost statuses among the new options)."""


@dataclass(frozen=True)
class Provisioning:
    """What provisioning creates for a move (``python -m infra.espocrm.provision --plan FILE``), as the
    plan writes it: custom fields, options of existing enums, and the currencies the records hold
    (EspoCRM refuses an amount in a currency its settings do not list: ``validCurrency``)."""

    fields: tuple[CustomField, ...] = ()
    enum_options: tuple[EnumOptions, ...] = ()
    currencies: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "customFields": [
                {
                    "entity": item.entity,
                    "name": item.name,
                    "type": item.type,
                    "label": item.label,
                    "options": list(item.options),
                    "sourceField": item.source_field,
                    "foreignEntity": item.foreign_entity,
                }
                for item in self.fields
            ],
            "enumOptions": [
                {
                    "entity": item.entity,
                    "attribute": item.attribute,
                    "options": list(item.options),
                    "probabilities": dict(item.probabilities),
                    "notActual": list(item.not_actual),
                }
                for item in self.enum_options
            ],
            "currencies": list(self.currencies),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Provisioning:
        """The inverse of :meth:`to_json`; a missing or mistyped key is a ``ValueError`` naming it."""
        try:
            fields = tuple(
                CustomField(
                    entity=str(item["entity"]),
                    name=str(item["name"]),
                    type=str(item["type"]),
                    label=str(item["label"]),
                    options=tuple(str(option) for option in item.get("options") or ()),
                    source_field=str(item.get("sourceField") or ""),
                    foreign_entity=str(item.get("foreignEntity") or ""),
                )
                for item in _items(data, "customFields")
            )
            enum_options = tuple(
                EnumOptions(
                    entity=str(item["entity"]),
                    attribute=str(item["attribute"]),
                    options=tuple(str(option) for option in item["options"]),
                    probabilities={str(key): int(value) for key, value in (item.get("probabilities") or {}).items()},
                    not_actual=tuple(str(option) for option in item.get("notActual") or ()),
                )
                for item in _items(data, "enumOptions")
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a provisioning plan: {error!r} missing or of the wrong type") from None
        currencies = data.get("currencies") or []
        if not isinstance(currencies, list):
            raise ValueError("not a provisioning plan: currencies is not a list")
        return cls(fields, enum_options, tuple(str(code) for code in currencies))


def _items(data: Mapping[str, object], key: str) -> list[Mapping[str, Any]]:
    items = data.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise ValueError(f"not a provisioning plan: {key} is not a list of objects")
    return items
