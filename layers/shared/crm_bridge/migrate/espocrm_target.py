"""EspoCRM's side of the whole-CRM move: what it holds (:func:`read_schema`) and how records get in.

Everything goes through :class:`~crm_bridge.providers.espocrm.EspoCrmProvider`'s client (its key or
HMAC, time budget and typed errors). Every write is idempotent the way the lead backfill's are:

* a record carries its original's key (``bitrix24:company:7``, a lead's ``bitrix24:101``) in the
  custom varchar the lead mapping already writes it to (``cSourceRecord``), created on every moved
  entity by provisioning (:func:`source_record_fields`); a rerun finds the record by it and writes
  only the attributes that differ;
* a note ends with the import marker of its comment (``crm_bridge.providers.records.import_marker``)
  and is written only when the record's stream lacks that marker;
* a file field is filled only while it is empty.

What the real EspoCRM 8.4.2 does that shapes this (tests/fixtures/espocrm-8.4.2/42-59):

* ``createdAt`` and ``createdById`` sent by an API user are silently ignored, on records and notes:
  a note's original author and date go into its text (:func:`~crm_bridge.providers.lead_draft.copied_comment`);
* a file is ``POST Attachment`` with the bytes as a ``data:`` URL, ``relatedType`` and ``field``
  naming where it goes, then its id is set on the note (``attachmentsIds``) or field (``cXId`` / ``cXIds``);
* Account and Contact check duplicates by name: the move creates with ``X-Skip-Duplicate-Check``, the
  key field being what identifies a record;
* Opportunity requires ``closeDate`` and ``amount``; an amount in a currency the settings do not
  list is a 400 ``validCurrency`` (provisioning adds the portal's currencies);
* an Email archived from someone else's address needs the role's ``Import`` scope (else 403 "Not
  allowed 'from' address.", ``Classes/RecordHooks/Email/CheckFromAddress``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from crm_bridge.errors import CrmConfigurationError, SettingsError
from crm_bridge.field_mapping import MappedField, ProviderMapping
from crm_bridge.migrate.schema import CustomField, TargetField, TargetSchema, TargetUser
from crm_bridge.providers.espocrm import EspoCrmProvider, write_outcome
from crm_bridge.providers.http import json_body
from crm_bridge.providers.lead_draft import copied_comment
from crm_bridge.providers.records import RecordedNote, import_marker

SCHEMA_ENTITIES = ("Lead", "Contact", "Account", "Opportunity", "Call", "Meeting", "Task", "Email", "Note")
"""The entities whose fields the plan places the portal's into."""
KEYED_ENTITIES = ("Account", "Contact", "Opportunity", "Lead", "Call", "Meeting", "Task", "Email")
"""The entities whose records carry their original's key (notes carry a marker in their text)."""
SOURCE_RECORD_LABEL = "Source Record"
SOURCE_RECORD_LENGTH = 64
_PAGE = 200
"""EspoCRM's largest ``maxSize`` (``recordListMaxSizeLimit``)."""
_USER_ATTRIBUTES = ("userName", "name", "emailAddress", "isActive")
_SKIP_DUPLICATE_CHECK = {"X-Skip-Duplicate-Check": "true"}


def source_key(provider: str, kind: str, record_id: str) -> str:
    """The key a copy carries: ``bitrix24:company:7``; a lead's is the lead backfill's ``bitrix24:101``,
    so a lead it copied is found again."""
    return f"{provider}:{record_id}" if kind == "lead" else f"{provider}:{kind}:{record_id}"


def source_record_attribute(mapping: ProviderMapping) -> str:
    """The attribute that holds the key: the one the lead mapping writes ``source_record`` to."""
    attribute = mapping.lead_fields.get(MappedField.SOURCE_RECORD)
    if attribute is None:
        raise SettingsError("the field mapping names no source_record field: a move keeps each record's original there")
    return attribute


def source_record_fields(mapping: ProviderMapping) -> tuple[CustomField, ...]:
    """The key field on every entity the move writes records of, for provisioning (Lead's comes
    with the lead mapping)."""
    attribute = source_record_attribute(mapping)
    return tuple(
        CustomField(entity, attribute, "varchar", SOURCE_RECORD_LABEL) for entity in KEYED_ENTITIES if entity != "Lead"
    )


class WriteAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Written:
    """What one write did; ``ignored``: attributes EspoCRM does not have, dropped without an error
    (a misnamed or unprovisioned field: the move reports them rather than lose their values unseen)."""

    record_id: str
    action: WriteAction
    ignored: tuple[str, ...] = ()
    files_written: int = 0


@dataclass(frozen=True)
class FileContent:
    """A file's bytes as the portal served them, with the name and type people see."""

    name: str
    mime_type: str
    content: bytes


@dataclass(frozen=True)
class Comment:
    """A portal comment to post on a record's stream."""

    note: RecordedNote
    author: str | None = None
    """The original author's name: the note's own author is the API user."""
    files: tuple[FileContent, ...] = ()


def read_schema(provider: EspoCrmProvider) -> TargetSchema:
    """The fields of the moved entities (type, options, label, custom) and the active users, once the
    API user's role (``App/user``'s access table, fixture 59) reads every moved entity and the users:
    provisioning's migration role."""
    table = _mapping(_mapping(_object(provider, "App/user").get("acl")).get("table"))
    unreadable = [scope for scope in (*KEYED_ENTITIES, "User") if _mapping(table.get(scope)).get("read") != "all"]
    if unreadable:
        # Metadata alone cannot tell: it shows an unreadable entity's fields that a readable one
        # refers to (the live role sees Account.industry, Lead's options).
        raise CrmConfigurationError(
            f"the API user's role does not read all of {', '.join(unreadable)}: provision --plan gives it the move's",
            provider=provider.name,
        )
    metadata = _object(provider, "Metadata")
    translations = _object(provider, "I18n")
    definitions = _mapping(metadata.get("entityDefs"))
    fields = {
        entity: _entity_fields(
            _mapping(_mapping(definitions.get(entity)).get("fields")),
            _mapping(_mapping(translations.get(entity)).get("fields")),
        )
        for entity in SCHEMA_ENTITIES
    }
    return TargetSchema(fields, _users(provider))


def _entity_fields(definitions: Mapping[str, Any], labels: Mapping[str, Any]) -> dict[str, TargetField]:
    return {
        name: TargetField(
            name=name,
            type=str(definition.get("type") or ""),
            label=str(labels.get(name) or ""),
            options=tuple(str(option) for option in definition.get("options") or ()),
            custom=bool(definition.get("isCustom")),
            read_only=bool(definition.get("readOnly")),
        )
        for name, definition in definitions.items()
        if isinstance(definition, Mapping) and not definition.get("utility")
    }


def _users(provider: EspoCrmProvider) -> tuple[TargetUser, ...]:
    users: list[TargetUser] = []
    offset = 0
    while True:
        params = {
            "select": ",".join(("id", *_USER_ATTRIBUTES)),
            "maxSize": str(_PAGE),
            "offset": str(offset),
            "orderBy": "userName",
        }
        page = _mapping(json_body(provider.request("GET", "User", params=params), provider.name)).get("list") or []
        users += [
            TargetUser(
                id=str(user["id"]),
                user_name=str(user.get("userName") or ""),
                name=str(user.get("name") or ""),
                email=str(user["emailAddress"]).lower() if user.get("emailAddress") else None,
                active=bool(user.get("isActive")),
            )
            for user in page
            if isinstance(user, Mapping) and "id" in user
        ]
        if len(page) < _PAGE:
            return tuple(users)
        offset += _PAGE


def _object(provider: EspoCrmProvider, path: str) -> Mapping[str, Any]:
    return _mapping(json_body(provider.request("GET", path), provider.name))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class EspoCrmTarget:
    """Writes a moved record, its files and its comments, each only once however often it runs."""

    def __init__(self, provider: EspoCrmProvider, schema: TargetSchema) -> None:
        self._provider = provider
        self._schema = schema
        self._key = source_record_attribute(provider.mapping)

    def find(self, entity: str, key: str) -> dict[str, Any] | None:
        """The record of ``entity`` that carries ``key``, read in full (its links' ids too), or None."""
        where = [{"type": "equals", "attribute": self._key, "value": key}]
        found = self._provider.search(where, entity=entity, select=[self._key], max_size=2)
        matches = [row for row in found if row.get(self._key) == key]  # never trust the filter alone
        if not matches:
            return None
        return self._provider.record_of(self._provider.request("GET", f"{entity}/{matches[0]['id']}"))

    def count(self, entity: str, key_prefix: str) -> int:
        """How many records of ``entity`` carry a key starting with ``key_prefix`` (``bitrix24:company:``),
        counted page by page: an Email list gives no total (``collection.countDisabled``, entityDefs/Email.json)."""
        where = [{"type": "startsWith", "attribute": self._key, "value": key_prefix}]
        counted = offset = 0
        while True:
            search = {"where": where, "select": ["id"], "orderBy": "id", "maxSize": _PAGE, "offset": offset}
            response = self._provider.request("GET", entity, params={"searchParams": json.dumps(search)})
            page = _mapping(json_body(response, self._provider.name)).get("list") or []
            counted += len(page)
            if len(page) < _PAGE:
                return counted
            offset += _PAGE

    def write(
        self,
        entity: str,
        key: str,
        attributes: Mapping[str, Any],
        *,
        files: Mapping[str, Sequence[FileContent]] | None = None,
        dry_run: bool = False,
    ) -> Written:
        """Create the record of ``key``, or bring the one there up to ``attributes`` (only those that
        differ are sent); then fill its empty file fields with ``files`` (field name → files)."""
        existing = self.find(entity, key)
        if existing is None:
            if dry_run:
                return Written("", WriteAction.CREATED, files_written=sum(map(len, (files or {}).values())))
            payload = {**attributes, self._key: key}
            response = self._provider.request("POST", entity, body=payload, headers=_SKIP_DUPLICATE_CHECK)
            created = write_outcome(payload, self._provider.record_of(response))
            written = self._fill_files(entity, created.record_id, {}, files or {})
            return Written(created.record_id, WriteAction.CREATED, created.ignored_fields, written)
        record_id = str(existing["id"])
        ignored = tuple(sorted(name for name in attributes if name not in existing))
        changes = {
            name: value
            for name, value in attributes.items()
            if name in existing and not same_value(existing[name], value)
        }
        if dry_run:
            action = WriteAction.UPDATED if changes else WriteAction.UNCHANGED
            unfilled = [items for name, items in (files or {}).items() if not _filled(existing, name)]
            return Written(record_id, action, ignored, sum(map(len, unfilled)))
        if changes:
            self._provider.request("PUT", f"{entity}/{record_id}", body=changes)
        written = self._fill_files(entity, record_id, existing, files or {})
        action = WriteAction.UPDATED if changes or written else WriteAction.UNCHANGED
        return Written(record_id, action, ignored, written)

    def _fill_files(
        self, entity: str, record_id: str, existing: Mapping[str, Any], files: Mapping[str, Sequence[FileContent]]
    ) -> int:
        """Upload the files of each empty file field and link them; returns how many were written."""
        links: dict[str, Any] = {}
        for name, contents in files.items():
            if not contents or _filled(existing, name):
                continue
            multiple = self._field_type(entity, name) == "attachmentMultiple"
            chosen = contents if multiple else contents[:1]
            ids = [self.upload(content, related_type=entity, field=name) for content in chosen]
            links.update({f"{name}Ids": ids} if multiple else {f"{name}Id": ids[0]})
        if links:
            self._provider.request("PUT", f"{entity}/{record_id}", body=links)
        return sum(len(value) if isinstance(value, list) else 1 for value in links.values())

    def _field_type(self, entity: str, name: str) -> str:
        field = self._schema.fields.get(entity, {}).get(name)
        if field is None or field.type not in ("file", "attachmentMultiple"):
            raise ValueError(f"{entity}.{name} is not a file field of this EspoCRM")
        return field.type

    def upload(self, file: FileContent, *, related_type: str, field: str) -> str:
        """Store a file for ``related_type``'s ``field`` (``attachments`` of a Note); returns its id."""
        body = {
            "name": file.name,
            "type": file.mime_type,
            "role": "Attachment",
            "relatedType": related_type,
            "field": field,
            "file": f"data:{file.mime_type};base64,{base64.b64encode(file.content).decode('ascii')}",
        }
        return str(self._provider.record_of(self._provider.request("POST", "Attachment", body=body))["id"])

    def post_comments(
        self, entity: str, record_id: str, key: str, comments: Sequence[Comment], *, dry_run: bool = False
    ) -> int:
        """Post each comment the record's stream lacks (by its marker), oldest first, with its files;
        returns how many were (or, in a dry run, would be) posted."""
        known = self.stream_lines(entity, record_id) if record_id else set()
        missing = [comment for comment in comments if import_marker(key, comment.note.note_id) not in known]
        if dry_run:
            return len(missing)
        for comment in missing:
            attachments = [self.upload(file, related_type="Note", field="attachments") for file in comment.files]
            note = {
                "type": "Post",
                "parentType": entity,
                "parentId": record_id,
                "post": copied_comment(self._provider_of(key), key, comment.note, comment.author),
                "attachmentsIds": attachments,
            }
            self._provider.request("POST", "Note", body=note)
        return len(missing)

    @staticmethod
    def _provider_of(key: str) -> str:
        return key.split(":", 1)[0]

    def stream_lines(self, entity: str, record_id: str) -> set[str]:
        """The lines of a record's stream posts: a comment's import marker is one of them, whole (the
        marker of ``note 5`` is within ``note 50``'s, so a search in the text would find a deleted one)."""
        return {line.strip() for post in self._stream_posts(entity, record_id) for line in post.splitlines()}

    def _stream_posts(self, entity: str, record_id: str) -> list[str]:
        """The texts of a record's stream: where a comment's import marker shows it was copied."""
        posts: list[str] = []
        offset = 0
        while True:
            params = {"maxSize": str(_PAGE), "offset": str(offset)}
            response = self._provider.request("GET", f"{entity}/{record_id}/stream", params=params)
            page = _mapping(json_body(response, self._provider.name)).get("list") or []
            posts += [str(note.get("post") or "") for note in page if isinstance(note, Mapping)]
            if len(page) < _PAGE:
                return posts
            offset += _PAGE


def _filled(record: Mapping[str, Any], field: str) -> bool:
    return bool(record.get(f"{field}Id") or record.get(f"{field}Ids"))


def same_value(stored: Any, wanted: Any) -> bool:
    """Whether EspoCRM's value is the one the move would write: numbers by value (a currency comes
    back as a float), lists in any order (id lists, multi-enums: their order is the server's), and
    the items of a phone or e-mail list by the keys the move gave (the server adds ``optOut``,
    ``invalid``)."""
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return bool(stored is wanted)
    if isinstance(wanted, int | float) and isinstance(stored, int | float):
        return float(stored) == float(wanted)
    if isinstance(wanted, list) and isinstance(stored, list):
        if all(isinstance(item, Mapping) for item in (*wanted, *stored)):
            keys = {key for item in wanted for key in item}
            stored = [{key: item.get(key) for key in keys} for item in stored]
        return sorted(map(_canonical, stored)) == sorted(map(_canonical, wanted))
    return bool(stored == wanted)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def espocrm_moment(moment: datetime) -> str:
    """A time as EspoCRM's datetime fields take it: UTC, ``2024-03-01 10:00:00``."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
