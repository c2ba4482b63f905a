"""The entities a whole-CRM move writes besides leads, as EspoCRM 8.4.2 answers a migration role.

Part of :class:`tests.simulators.espocrm.SimulatedEspoCrm` (``migration_role=True``: the role
``infra/espocrm/provision.py --plan`` gives). Built from the recordings 42-59:

* the fields of Account, Contact, Opportunity, Call, Meeting, Task, Email (and Lead's, Note's) are
  the real server's metadata (56) and labels (57), with the key field provisioning adds; custom fields
  a plan adds come through :meth:`MovedRecords.add_field`;
* a write drops attributes the entity lacks and those an API user may not set (``createdAt``,
  ``createdById``: 42, 43); required fields (the metadata's ``required``) are a 400 ``required`` on a
  create (49), an enum value outside its options a 400 ``valid``, an amount in a currency the
  settings lack a 400 ``validCurrency`` on the amount (48);
* a file is ``POST Attachment`` with a ``data:`` URL (44) and read back from ``Attachment/file/{id}`` (45);
* the users listed are the active, non-API ones (58: ``AccessControlFilters/Mandatory``).
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

MOVED_ENTITIES = ("Account", "Contact", "Opportunity", "Call", "Meeting", "Task", "Email")
_METADATA = "56_api_metadata_moved_entities"
_I18N = "57_api_i18n_moved_entities"
_RECORDING_PLAN_FIELDS = frozenset(
    {"cUfIndustryCode", "cUfPartner", "cUfPartnerContact", "cUfSponsor", "cUfSponsorContact"}
)
"""What the recording's own plan added (tests/real_crm/record_move_fixtures.py): not a fresh install's."""
_STOCK_OPTIONS = {
    ("Lead", "status"): ("New", "Assigned", "In Process", "Converted", "Recycled", "Dead"),
    ("Opportunity", "stage"): ("Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"),
}
_SINGLE_ID = frozenset({"link", "file", "image"})
_MANY_IDS = frozenset({"linkMultiple", "attachmentMultiple"})


@cache
def recorded_definitions() -> dict[str, dict[str, dict[str, Any]]]:
    """entity -> field -> definition, as a fresh install provisioned for a move has them."""
    from tests.simulators.espocrm import fixture

    recorded = fixture(_METADATA)["response"]["body"]["entityDefs"]
    definitions = {
        entity: {name: definition for name, definition in body["fields"].items() if name not in _RECORDING_PLAN_FIELDS}
        for entity, body in recorded.items()
    }
    for (entity, name), options in _STOCK_OPTIONS.items():
        definitions[entity][name]["options"] = list(options)
        probabilities = definitions[entity][name].get("probabilityMap")
        if probabilities:
            definitions[entity][name]["probabilityMap"] = {key: probabilities[key] for key in options}
    return definitions


@cache
def recorded_labels() -> dict[str, dict[str, Any]]:
    from tests.simulators.espocrm import fixture

    return dict(fixture(_I18N)["response"]["body"])


def recorded_admin() -> dict[str, Any]:
    from tests.simulators.espocrm import fixture

    return dict(fixture("58_api_user_list")["response"]["body"]["list"][0])


@dataclass
class StoredFile:
    id: str
    name: str
    type: str
    content: bytes
    field: str | None
    related_type: str | None


@dataclass
class MovedRecords:
    """The records, files and users; the HTTP side is SimulatedEspoCrm's."""

    definitions: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: copy.deepcopy(recorded_definitions())
    )
    labels: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(recorded_labels()))
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {e: {} for e in MOVED_ENTITIES})
    files: dict[str, StoredFile] = field(default_factory=dict)
    users: list[dict[str, Any]] = field(default_factory=lambda: [recorded_admin()])
    """The install's administrator first, as recorded (fixture 58)."""
    currencies: list[str] = field(default_factory=lambda: ["USD"])
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self) -> str:
        return f"6c0{next(self._ids):014x}"

    def add_field(self, entity: str, attribute: str, definition: Mapping[str, Any], label: str = "") -> None:
        """A field provisioning created (or an admin): writable, in the metadata, with its label."""
        self.definitions.setdefault(entity, {})[attribute] = {**definition, "isCustom": True}
        self.labels.setdefault(entity, {}).setdefault("fields", {})[attribute] = label or attribute

    def attributes(self, entity: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """attribute -> (its field, the field's definition): ``accountId`` is the ``account`` link's."""
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        for name, definition in self.definitions[entity].items():
            kind = definition.get("type")
            if kind in _SINGLE_ID:
                names = [f"{name}Id"]
            elif kind in _MANY_IDS:
                names = [f"{name}Ids"]
            elif kind == "linkParent":
                names = [f"{name}Id", f"{name}Type"]
            elif kind == "currency":
                names = [name, f"{name}Currency"]
            elif kind in ("email", "phone"):
                names = [name, f"{name}Data"]
            else:
                names = [name]
            found.update(dict.fromkeys(names, (name, definition)))
        return found

    def active_users(self) -> list[dict[str, Any]]:
        return [user for user in self.users if user.get("isActive") and user.get("type") != "api"]

    def file_names(self, ids: Iterable[str]) -> dict[str, str]:
        return {file_id: self.files[file_id].name for file_id in ids if file_id in self.files}


def file_from_data_url(data_url: str) -> tuple[str, bytes]:
    """``data:application/pdf;base64,....`` -> (mime type, bytes), as ``Attachment`` decodes its ``file``."""
    header, _, encoded = data_url.partition(",")
    return header.removeprefix("data:").split(";", 1)[0], base64.b64decode(encoded)
