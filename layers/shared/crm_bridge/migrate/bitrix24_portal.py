"""The whole Bitrix24 portal read for the move to EspoCRM (#23): its schema, every record with every
field, activities, timeline comments and files.

Everything goes through the Bitrix24 provider's request path (its pacing, error mapping and batch)
and the backfill's retries (:func:`crm_bridge.migrate.backfill.with_retries`); nothing is written.
Large lists are read the way Bitrix24 recommends: filter ``>ID`` the last id read, order by ID,
``start=-1`` (no count), and several such pages chained in one ``batch``, each page's filter
referring to the previous page's last id (DOCS: settings/performance/huge-data, batch).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from crm_bridge.errors import CrmError, RetryableCrmError
from crm_bridge.migrate.backfill import with_retries
from crm_bridge.migrate.schema import (
    Option,
    Pipeline,
    Semantics,
    SourceEntity,
    SourceField,
    SourceSchema,
    SourceUser,
    Stage,
    activity_target,
)
from crm_bridge.providers.bitrix24 import BATCH_MAX_COMMANDS, Bitrix24Provider, batch_reference

PAGE = 50
"""Records a list method answers at once (DOCS: crm-lead-list, "always static: 50 records")."""
PAGES_PER_BATCH = 10
"""Pages chained in one batch: 500 records a request. A batch runs its sub-calls one after another
within one HTTP request, so 50 full pages (every field) could outlast the client's timeout
(``CRM_TIMEOUT_SECONDS``, 5 s by default); the pages after a short last one are read in vain."""
DEAL_ENTITY_TYPE_ID = 2
MULTIFIELDS = ("PHONE", "EMAIL", "WEB", "IM")
"""Left out by ``*`` and ``UF_*``: named in every list's ``select`` (DOCS: crm-lead-list, select)."""
_RECORD_ENTITIES = (SourceEntity.LEAD, SourceEntity.CONTACT, SourceEntity.COMPANY, SourceEntity.DEAL)
_HAS_MULTIFIELDS = frozenset({SourceEntity.LEAD, SourceEntity.CONTACT, SourceEntity.COMPANY})
_SEMANTICS = {"S": Semantics.SUCCESS, "F": Semantics.FAILURE}
_FILE_LINKS = ("downloadUrl", "urlDownload", "url")
"""Where each file shape keeps its bytes: a user field's, a timeline comment's, an activity's."""


@dataclass(frozen=True)
class Usage:
    """What the portal's records hold, for the plan: only filled fields are placed, the report shows
    how many records fill each, and provisioning allows the currencies the amounts are in."""

    filled: Mapping[SourceEntity, Mapping[str, int]]
    """Per entity, field → records holding a value; ``IM.TELEGRAM``... per messenger kind in use; for
    activities also ``Meeting:LOCATION``... per EspoCRM entity they go to (a field only meetings fill
    is no field of a call)."""
    currencies: frozenset[str]
    """Codes of ``crm_currency`` fields (``CURRENCY_ID``) and of money values (``"1200|EUR"``)."""


class PortalReader:
    """Reads a portal through ``provider`` (its webhook, pacing and errors), retrying as the backfill does."""

    def __init__(
        self,
        provider: Bitrix24Provider,
        *,
        language: str = "en",
        pages_per_batch: int = PAGES_PER_BATCH,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``language``: of the user fields' labels (``userfield.list`` gives them only for a ``LANG``);
        ``pages_per_batch``: list pages of 50 chained in one request (at most 50)."""
        if not 1 <= pages_per_batch <= BATCH_MAX_COMMANDS:
            raise ValueError(f"a batch chains 1 to {BATCH_MAX_COMMANDS} pages")
        self._provider = provider
        self._language = language
        self._pages_per_batch = pages_per_batch
        self._sleep = sleep

    def _read(self, method: str, params: dict[str, Any]) -> Any:
        return with_retries(partial(self._provider.read, method, params), sleep=self._sleep)

    def _batch(self, commands: Mapping[str, tuple[str, dict[str, Any]]], *, checked: bool = True) -> dict[str, Any]:
        """The sub-calls' answers; ``checked``: the first failed one raises (else the caller checks
        the answers it uses)."""
        answers = with_retries(partial(self._provider.read_batch, commands), sleep=self._sleep)
        failed = next((answer for answer in answers.values() if isinstance(answer, CrmError)), None)
        if checked and failed is not None:
            raise failed
        return answers

    # --- schema ------------------------------------------------------------------------------------

    def schema(self) -> SourceSchema:
        """Fields of the four record kinds (``crm.*.fields`` with ``userfield.list``'s labels and list
        items) and of activities (``crm.activity.fields``: activities have no user fields), lead stages, pipelines with their stages, the other status lists, and users: one batch,
        then more pages of statuses and users only where a portal has more than fit."""
        paged: dict[str, tuple[str, dict[str, Any]]] = {
            "statuses": ("crm.status.list", {"order": {"SORT": "ASC"}}),
            "users": ("user.get", {}),
        }
        paged |= {
            f"user_fields_{entity}": (f"crm.{entity}.userfield.list", {"filter": {"LANG": self._language}})
            for entity in _RECORD_ENTITIES
        }
        commands = {key: (method, params | {"start": 0}) for key, (method, params) in paged.items()}
        commands |= {f"fields_{entity}": (f"crm.{entity}.fields", {}) for entity in SourceEntity}
        commands["categories"] = ("crm.category.list", {"entityTypeId": DEAL_ENTITY_TYPE_ID})
        answers = self._batch(commands)
        lists = {key: self._all_pages(*paged[key], answers[key]) for key in paged}
        statuses, users = lists["statuses"], lists["users"]
        by_list: dict[str, list[dict[str, Any]]] = {}
        for status in statuses:
            by_list.setdefault(str(status["ENTITY_ID"]), []).append(status)
        categories = answers["categories"].get("categories", []) if isinstance(answers["categories"], dict) else []
        choices = [Option(str(category["id"]), str(category["name"])) for category in categories]
        fields = {
            entity: _fields(answers[f"fields_{entity}"], lists.get(f"user_fields_{entity}", []), by_list, choices)
            for entity in SourceEntity
        }
        pipelines = tuple(
            Pipeline(
                id=str(category["id"]),
                name=str(category["name"]),
                stages=_stages(by_list.get(_stage_list(category["id"]), [])),
                default=str(category.get("isDefault")) == "Y",
            )
            for category in categories
        )
        stage_lists = {_stage_list(category["id"]) for category in categories} | {"STATUS"}
        return SourceSchema(
            fields=fields,
            lead_statuses=_stages(by_list.get("STATUS", [])),
            pipelines=pipelines,
            users=tuple(_user(user) for user in users),
            statuses={
                name: tuple(Option(str(item["STATUS_ID"]), str(item["NAME"])) for item in items)
                for name, items in by_list.items()
                if name not in stage_lists
            },
        )

    def _all_pages(self, method: str, params: dict[str, Any], first_page: Any) -> list[dict[str, Any]]:
        """Every item of a list read by ``start`` (statuses, users, user fields, a record's comments),
        from its first page on, 50 a page."""
        items: list[dict[str, Any]] = []
        page = first_page
        while True:
            if not isinstance(page, list):
                raise RetryableCrmError(f"unexpected answer to {method}", provider=self._provider.name)
            items += [item for item in page if isinstance(item, dict)]
            if len(page) < PAGE:
                return items
            page = self._read(method, params | {"start": len(items)})

    # --- records -----------------------------------------------------------------------------------

    def records(self, entity: SourceEntity, *, after: int = 0, bindings: bool = True) -> Iterator[dict[str, Any]]:
        """Every record of ``entity`` with every field (user fields, the multi-fields named; an
        activity with its COMMUNICATIONS, FILES and BINDINGS), in ID order, ``pages_per_batch`` pages of
        50 a request (and for activities one more a page, their bindings: :meth:`_bind`, unless not
        ``bindings``); ``after``: only those of a greater ID (a resumed move)."""
        method = f"crm.{entity}.list"
        select = ["*", "UF_*"] if entity is not SourceEntity.ACTIVITY else ["*", "COMMUNICATIONS", "FILES"]
        if entity in _HAS_MULTIFIELDS:
            select += MULTIFIELDS
        last = after
        while True:
            commands: dict[str, tuple[str, dict[str, Any]]] = {}
            for index in range(self._pages_per_batch):
                bound: Any = last if index == 0 else batch_reference(f"p{index - 1}", PAGE - 1, "ID")
                listing = {"filter": {">ID": bound}, "order": {"ID": "ASC"}, "select": select, "start": -1}
                commands[f"p{index}"] = (method, listing)
            answers = self._batch(commands, checked=False)  # pages after a short one are not used
            for index in range(self._pages_per_batch):
                page = answers[f"p{index}"]
                if isinstance(page, CrmError):
                    raise page
                rows = [row for row in page if isinstance(row, dict)] if isinstance(page, list) else []
                if entity is SourceEntity.ACTIVITY and bindings:
                    self._bind(rows)
                for row in rows:
                    # A page after a short one referred to an id that did not exist: never trusted.
                    if int(row["ID"]) <= last:
                        raise RetryableCrmError(f"{method} answered out of order", provider=self._provider.name)
                    last = int(row["ID"])
                    yield row
                if len(rows) < PAGE:
                    return

    def usage(self, schema: SourceSchema) -> Usage:
        """Read every record of the schema's entities (:meth:`records`: paced, 500 a request; an
        activity's bindings not read) and count what they hold."""
        filled: dict[SourceEntity, Counter[str]] = {}
        currencies: set[str] = set()
        for entity, fields in schema.fields.items():
            counts = filled.setdefault(entity, Counter())
            for record in self.records(entity, bindings=False):
                held = {name: value for name, value in record.items() if _holds(value)}
                if entity is SourceEntity.ACTIVITY and "OWNER_ID" in held:
                    # Bound to its owner at least (DOCS: crm-activity-binding-list): counted without
                    # the request a page that reading its bindings costs.
                    held["BINDINGS"] = True
                counts.update(held.keys())
                counts.update({f"IM.{item.get('VALUE_TYPE')}" for item in held.get("IM", ()) if isinstance(item, dict)})
                if entity is SourceEntity.ACTIVITY:
                    counts.update(f"{activity_target(record.get('TYPE_ID'))}:{name}" for name in held)
                for name, value in held.items():
                    currencies |= _currencies(fields.get(name), value)
        return Usage({entity: dict(counts) for entity, counts in filled.items()}, frozenset(currencies))

    def comments(self, entity: SourceEntity, record_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The timeline comments of these records (ID, CREATED, AUTHOR_ID, COMMENT, FILES), oldest
        first: one request for 50 records, more only for a record with more than a page."""
        method = "crm.timeline.comment.list"
        first_pages = self._per_record(method, lambda record_id: _comment_list(entity, record_id, 0), record_ids)
        return {
            record_id: self._all_pages(method, _comment_list(entity, record_id, 0), page)
            for record_id, page in first_pages.items()
        }

    def _bind(self, activities: list[dict[str, Any]]) -> None:
        """Each activity's ``BINDINGS`` as ``crm.activity.binding.list`` answers them (``entityTypeId``,
        ``entityId``; DOCS: crm-activity-binding-list): the list method does not give them. One request
        for 50 activities."""
        answers = self._per_record("crm.activity.binding.list", _binding_list, [str(row["ID"]) for row in activities])
        for row in activities:
            answer = answers.get(str(row.get("ID")))
            row["BINDINGS"] = [item for item in answer if isinstance(item, dict)] if isinstance(answer, list) else []

    def _per_record(
        self, method: str, params_of: Callable[[str], dict[str, Any]], record_ids: Iterable[str]
    ) -> dict[str, Any]:
        """``method`` once per record, 50 records a batch: record id -> its answer."""
        answers: dict[str, Any] = {}
        ids = list(record_ids)
        for first in range(0, len(ids), BATCH_MAX_COMMANDS):
            chunk = ids[first : first + BATCH_MAX_COMMANDS]
            answers |= self._batch({record_id: (method, params_of(record_id)) for record_id in chunk})
        return answers

    def download(self, file: Mapping[str, Any]) -> bytes:
        """The bytes of a file as a record, a comment or an activity gives it (its download link)."""
        link = next((str(file[key]) for key in _FILE_LINKS if file.get(key)), None)
        if link is None:
            raise ValueError("this file has no download link")
        return with_retries(partial(self._provider.download, link), sleep=self._sleep)


def _binding_list(activity_id: str) -> dict[str, Any]:
    return {"activityId": int(activity_id)}


def _holds(value: Any) -> bool:
    """A value a record fills in (Bitrix24 answers an empty field as null, "" or an empty list)."""
    return value not in (None, "", [], {})


def _currencies(source_field: SourceField | None, value: Any) -> set[str]:
    """The currency codes a value holds: a ``crm_currency`` field's code, a money field's ``amount|CODE``
    (as Bitrix's ``MoneyType::unFormatFromDB`` splits it), one or several."""
    if source_field is None or source_field.type not in ("crm_currency", "money"):
        return set()
    values = value if isinstance(value, list) else [value]
    codes = (str(item).rpartition("|")[2] if source_field.type == "money" else str(item) for item in values)
    return {code for code in codes if code}


def _comment_list(entity: SourceEntity, record_id: str, start: int) -> dict[str, Any]:
    return {
        "filter": {"ENTITY_ID": int(record_id), "ENTITY_TYPE": str(entity)},
        "select": ["ID", "CREATED", "ENTITY_ID", "ENTITY_TYPE", "AUTHOR_ID", "COMMENT", "FILES"],
        "order": {"ID": "ASC"},
        "start": start,
    }


def _stage_list(category_id: Any) -> str:
    """The status list of a pipeline's stages: DEAL_STAGE for the default one, DEAL_STAGE_<id> else."""
    return "DEAL_STAGE" if str(category_id) == "0" else f"DEAL_STAGE_{category_id}"


def _stages(items: Iterable[Mapping[str, Any]]) -> tuple[Stage, ...]:
    return tuple(
        Stage(
            id=str(item["STATUS_ID"]),
            name=str(item["NAME"]),
            semantics=_SEMANTICS.get(str(item.get("SEMANTICS") or ""), Semantics.PROCESS),
            sort=int(item.get("SORT") or 0),
        )
        for item in items
    )


def _user(item: Mapping[str, Any]) -> SourceUser:
    name = " ".join(str(item.get(part) or "") for part in ("NAME", "LAST_NAME")).strip()
    active = item.get("ACTIVE")
    return SourceUser(
        id=str(item["ID"]),
        name=name,
        email=str(item.get("EMAIL") or "") or None,
        active=active is True or str(active).upper() in ("Y", "TRUE", "1"),
    )


def _fields(
    descriptors: Mapping[str, Any],
    user_fields: Iterable[Mapping[str, Any]],
    statuses: Mapping[str, list[dict[str, Any]]],
    pipelines: Iterable[Option],
) -> dict[str, SourceField]:
    """``crm.*.fields`` merged with ``userfield.list`` (labels, LIST items), the status list a
    crm_status field takes its options from (a native's ``statusType``, a user field's
    ``SETTINGS.ENTITY_TYPE``: DOCS: crm-lead-userfield-list example) and the pipelines a
    crm_category field picks from."""
    listed = {str(item["FIELD_NAME"]): item for item in user_fields}
    fields: dict[str, SourceField] = {}
    for name, descriptor in descriptors.items():
        user_field = listed.get(name, {})
        settings = dict(descriptor.get("settings") or user_field.get("SETTINGS") or {})
        if descriptor.get("statusType"):
            settings["statusType"] = descriptor["statusType"]
        items = user_field.get("LIST") or descriptor.get("items") or []
        options = tuple(Option(str(item["ID"]), str(item["VALUE"])) for item in items)
        if descriptor.get("type") == "crm_status":
            status_type = descriptor.get("statusType") or settings.get("ENTITY_TYPE")
            options = tuple(
                Option(str(item["STATUS_ID"]), str(item["NAME"])) for item in statuses.get(str(status_type), [])
            )
        elif descriptor.get("type") == "crm_category":
            options = tuple(pipelines)
        title = (
            user_field.get("LIST_COLUMN_LABEL")
            or user_field.get("EDIT_FORM_LABEL")
            or descriptor.get("listLabel")
            or descriptor.get("formLabel")
            or descriptor.get("title")
            or name
        )
        fields[name] = SourceField(
            name=name,
            type=str(descriptor.get("type") or "string"),
            title=str(title),
            multiple=bool(descriptor.get("isMultiple")),
            custom=bool(descriptor.get("isDynamic")) or name.startswith("UF_"),
            read_only=bool(descriptor.get("isReadOnly")),
            options=options,
            settings=settings,
        )
    return fields
