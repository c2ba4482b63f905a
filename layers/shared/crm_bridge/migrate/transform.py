"""One portal record → the EspoCRM record its plan says it becomes (#23).

Pure: it reads the plan, both schemas, the record as ``crm.*.list`` answers it, the EspoCRM ids of
the records it links to and the paired owners, and returns the attributes to write and the files
to attach. The move writes what it returns; reconcile computes with it what each record must look
like. Values take EspoCRM's forms: list ids become option labels, ``"1500|EUR"`` an amount and its
currency, multi-fields typed phone and e-mail lists, times with offsets UTC ``YYYY-MM-DD HH:MM:SS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crm_bridge.migrate.espocrm_target import espocrm_moment
from crm_bridge.migrate.meanings import ACTIVITY_ENUMS, MESSENGERS, PHONE_TYPES, SOURCES, STANDARD, Meaning
from crm_bridge.migrate.plan import (
    EntityPlan,
    MigrationPlan,
    Placement,
    Where,
    custom_name,
    existing_option,
    list_items,
    status_type,
)
from crm_bridge.migrate.schema import (
    TARGET_ENTITY,
    CustomField,
    SourceEntity,
    SourceField,
    SourceSchema,
    TargetField,
    TargetSchema,
    TargetUser,
    activity_target,
)
from crm_bridge.normalization import normalize_phone

ENTITY_OF_TYPE: Mapping[str, SourceEntity] = {
    "1": SourceEntity.LEAD,
    "2": SourceEntity.DEAL,
    "3": SourceEntity.CONTACT,
    "4": SourceEntity.COMPANY,
}
"""CRM object type ids (DOCS: crm/data-types, object_type) of the kinds the move writes."""
BINDING_PREFIXES: Mapping[str, SourceEntity] = {
    "L": SourceEntity.LEAD,
    "C": SourceEntity.CONTACT,
    "CO": SourceEntity.COMPANY,
    "D": SourceEntity.DEAL,
}
"""A ``crm`` user field's value ``CO_6``: the prefix names the kind (DOCS: crm/data-types, crm)."""
_LINKS: Mapping[str, tuple[SourceEntity, bool]] = {
    "account": (SourceEntity.COMPANY, False),
    "accounts": (SourceEntity.COMPANY, True),
    "createdAccount": (SourceEntity.COMPANY, False),
    "contact": (SourceEntity.CONTACT, False),
    "contacts": (SourceEntity.CONTACT, True),
    "createdContact": (SourceEntity.CONTACT, False),
}
"""EspoCRM link → the kind it points to and whether it holds several (``…Ids``) or one (``…Id``)."""
_JOINED_BY_LINE = frozenset({"addressStreet", "billingAddressStreet", "cRegAddressStreet"})
_TRUE = frozenset({"1", "y", "yes", "true"})
_COMPLETED = {"Call": "Held", "Meeting": "Held", "Task": "Completed", "Email": "Archived"}
_OPEN = {"Call": "Planned", "Meeting": "Planned", "Task": "Not Started", "Email": "Archived"}
_CALL_DIRECTIONS = {"1": "Inbound", "2": "Outbound"}
_TASK_PRIORITIES = {"1": "Low", "2": "Normal", "3": "High"}
_HTML = "3"
"""``DESCRIPTION_TYPE`` of an HTML description (1 plain text, 2 BB codes)."""


@dataclass(frozen=True)
class Link:
    """A moved record as others link to it: its EspoCRM id and the name people see."""

    record_id: str
    name: str


type Links = Mapping[tuple[SourceEntity, str], Link]


@dataclass(frozen=True)
class Shaped:
    """A record as EspoCRM takes it: attributes, files by file field, and what could not be linked."""

    entity: str
    attributes: dict[str, Any]
    files: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    """File field → the portal's file objects (their download links), fetched by the move."""
    unlinked: tuple[str, ...] = ()
    """Links to records the target does not hold (``company 7``), for the report."""


@dataclass(frozen=True)
class MoveContext:
    """What every record's shape depends on: the plan and the two schemas it was made from."""

    plan: MigrationPlan
    source: SourceSchema
    target: TargetSchema

    def entity_plan(self, kind: SourceEntity, record: Mapping[str, Any]) -> EntityPlan | None:
        """The plan of the EspoCRM entity this record goes to (an activity's by its ``TYPE_ID``)."""
        entity = target_entity(kind, record)
        return next((item for item in self.plan.entities if (item.source, item.target) == (kind, entity)), None)


def target_entity(kind: SourceEntity, record: Mapping[str, Any]) -> str:
    if kind is SourceEntity.ACTIVITY:
        return activity_target(record.get("TYPE_ID"))
    return TARGET_ENTITY[kind]


def owners_of(plan: MigrationPlan, target: TargetSchema) -> dict[str, TargetUser]:
    """Bitrix24 user id → the EspoCRM user who owns their records (paired, or the default owner)."""
    users = {user.user_name: user for user in target.users}
    return {owner.user_id: users[owner.user_name] for owner in plan.owners if owner.user_name in users}


def references(kind: SourceEntity, record: Mapping[str, Any]) -> set[tuple[SourceEntity, str]]:
    """The records this one links to, for the move to look up before shaping it."""
    found: set[tuple[SourceEntity, str]] = set()
    for name in ("COMPANY_ID", "COMPANY_IDS"):
        found |= {(SourceEntity.COMPANY, value) for value in _ids(record.get(name))}
    for name in ("CONTACT_ID", "CONTACT_IDS"):
        found |= {(SourceEntity.CONTACT, value) for value in _ids(record.get(name))}
    if kind is SourceEntity.ACTIVITY:
        found |= {
            (other, source_id)
            for type_id, source_id in (_owner_of(record), *_communications(record), *_bindings(record))
            if (other := ENTITY_OF_TYPE.get(type_id)) is not None and source_id
        }
    for value in record.values():
        binding = _binding(value)
        if binding is not None:
            found.add(binding)
    return found


def attributes_for(
    context: MoveContext,
    kind: SourceEntity,
    record: Mapping[str, Any],
    *,
    links: Links,
    owners: Mapping[str, TargetUser],
    became: str | None = None,
) -> Shaped:
    """The EspoCRM record ``record`` becomes. ``links``: the moved records by (kind, Bitrix24 id);
    ``owners``: :func:`owners_of`; ``became``: a converted lead's deal's EspoCRM id (the deal's
    ``LEAD_ID`` names the lead)."""
    shaper = _Shaper(context, kind, record, links, owners)
    entity_plan = context.entity_plan(kind, record)
    for placement in entity_plan.placements if entity_plan else ():
        shaper.place(placement)
    if kind is SourceEntity.ACTIVITY:
        shaper.activity()
    if became is not None:
        shaper.attributes["createdOpportunityId"] = became
    return shaper.shaped()


class _Shaper:
    def __init__(
        self,
        context: MoveContext,
        kind: SourceEntity,
        record: Mapping[str, Any],
        links: Links,
        owners: Mapping[str, TargetUser],
    ) -> None:
        self.context = context
        self.kind = kind
        self.entity = target_entity(kind, record)
        self.record = record
        self.links = links
        self.owners = owners
        self.attributes: dict[str, Any] = {}
        self.parts: dict[str, list[str]] = {}
        """Attributes several fields fill (an address's street lines, state and region)."""
        self.text: list[str] = []
        """Labelled lines for the description: what no field holds."""
        self.files: dict[str, list[Mapping[str, Any]]] = {}
        self.unlinked: list[str] = []
        self.fields = context.source.fields.get(kind, {})

    # the whole record

    def shaped(self) -> Shaped:
        for attribute, parts in self.parts.items():
            self.attributes[attribute] = ("\n" if attribute in _JOINED_BY_LINE else ", ").join(parts)
        if self.text:
            description = "body" if self.entity == "Email" else "description"
            own = self.attributes.get(description)
            self.attributes[description] = "\n\n".join(filter(None, (own, "\n".join(self.text))))
        if self.entity == "Opportunity":
            self._deal_defaults()
        return Shaped(self.entity, self.attributes, self.files, tuple(self.unlinked))

    def _deal_defaults(self) -> None:
        """EspoCRM requires an amount and a close date (metadata, fixture 56; 49); its contacts panel lists
        ``contacts``, so the deal's main contact is among them."""
        self.attributes.setdefault("amount", 0.0)
        fallback = self.record.get("BEGINDATE") or self.record.get("DATE_CREATE")
        if "closeDate" not in self.attributes and not _empty(fallback):
            self.attributes["closeDate"] = _date(fallback)
        if "contactId" in self.attributes:
            contacts = {*self.attributes.get("contactsIds", ()), self.attributes["contactId"]}
            self.attributes["contactsIds"] = sorted(contacts)

    def place(self, placement: Placement) -> None:
        name = placement.field
        value = self.record.get(name)
        if placement.where is Where.NOT_MOVED or name == "ID" or _empty(value):
            return
        if placement.where is Where.TEXT:
            self.text.append(f"{placement.label}: {_plain(value)}")
            return
        special = {
            "ASSIGNED_BY_ID": self._owner,
            "RESPONSIBLE_ID": self._owner,
            "PHONE": self._phones,
            "EMAIL": self._emails,
            "IM": self._messengers,
            "WEB": self._websites,
            "STATUS_ID": self._status,
            "STAGE_ID": self._stage,
            "CATEGORY_ID": self._pipeline,
            "ADDRESS_COUNTRY_CODE": self._country_code,
        }.get("ADDRESS_COUNTRY_CODE" if name.endswith("ADDRESS_COUNTRY_CODE") else name)
        if special is not None and self.kind is not SourceEntity.ACTIVITY:
            special(placement, value)
            return
        if self.kind is SourceEntity.ACTIVITY and name in _ACTIVITY_FIELDS and placement.where is Where.SAME:
            return  # shaped by :meth:`activity`, which knows the entity's own values
        for attribute in placement.attributes:
            if "." in attribute:
                continue  # held by the other side of the link (the lead's createdContact)
            self._set(attribute, self.fields.get(name), value, placement)

    def _target(self, attribute: str) -> TargetField | CustomField | None:
        """EspoCRM's field, or the one the plan has provisioning create."""
        existing = self.context.target.fields.get(self.entity, {}).get(attribute)
        if existing is not None:
            return existing
        return next(
            (f for f in self.context.plan.custom_fields if (f.entity, f.name) == (self.entity, attribute)), None
        )

    def _set(self, attribute: str, source_field: SourceField | None, value: Any, placement: Placement) -> None:
        if attribute in _LINKS:
            self._link(attribute, value)
            return
        target = self._target(attribute)
        target_type = target.type if target is not None else ""
        source_type = source_field.type if source_field is not None else "string"
        if target_type in {"file", "attachmentMultiple"}:
            files = [item for item in _listed(value) if isinstance(item, Mapping)]
            if files:
                self.files[attribute] = files
            return
        if source_type == "money":
            if attribute.endswith("Currency"):
                return  # set with its amount, from the one value "1500|EUR"
            amount, _, currency = str(value).partition("|")
            self.attributes[attribute] = float(amount)
            if currency:
                self.attributes[f"{attribute}Currency"] = currency
            return
        if placement.field.startswith(("ADDRESS", "REG_ADDRESS")):  # parts of one address
            self.parts.setdefault(attribute, []).append(str(value))
            return
        self.attributes[attribute] = self._value(attribute, source_field, source_type, target_type, value)

    def _value(  # noqa: PLR0911 - one form per type
        self, attribute: str, source_field: SourceField | None, source_type: str, target_type: str, value: Any
    ) -> Any:
        if source_field is not None and (
            list_items(self.context.source, source_field) or source_type in ACTIVITY_ENUMS
        ):
            labels = [self._option(attribute, source_field, item) for item in _listed(value)]
            return labels if target_type in {"multiEnum", "array"} or source_field.multiple else labels[0]
        if source_type in {"user", "employee"}:
            owner = self.owners.get(str(value))
            return owner.name if owner else f"Bitrix24 user {value}"
        if source_type.startswith("crm") and source_type not in {"crm_currency", "crm_multifield"}:
            return ", ".join(self._named(item) for item in _listed(value))
        if target_type in {"array", "urlMultiple", "multiEnum"}:
            return [str(item) for item in _listed(value)]
        if target_type == "bool" or source_type in {"boolean", "char"}:
            return str(value).strip().lower() in _TRUE
        if target_type == "int":
            return int(float(value))
        if target_type in {"float", "currency"}:
            return float(value)
        if source_type == "date" or target_type == "date":
            return _date(value)
        if source_type == "datetime" or target_type == "datetime":
            return espocrm_moment(datetime.fromisoformat(str(value)))
        return _plain(value)

    # values of their own kind

    def _owner(self, placement: Placement, value: Any) -> None:
        owner = self.owners.get(str(value))
        if owner is not None:
            self.attributes["assignedUserId"] = owner.id

    def _phones(self, placement: Placement, value: Any) -> None:
        types = PHONE_TYPES.get(self.entity, {})
        self.attributes["phoneNumberData"] = [
            {
                "phoneNumber": _phone(str(item["VALUE"])),
                "primary": index == 0,
                "type": types.get(str(item.get("VALUE_TYPE")), "Other"),
            }
            for index, item in enumerate(_multifield(value))
        ]

    def _emails(self, placement: Placement, value: Any) -> None:
        self.attributes["emailAddressData"] = [
            {"emailAddress": str(item["VALUE"]), "primary": index == 0} for index, item in enumerate(_multifield(value))
        ]

    def _messengers(self, placement: Placement, value: Any) -> None:
        """One field per messenger kind (``cImTelegram``); several handles of a kind joined by ", "."""
        handles: dict[str, list[str]] = {}
        for item in _multifield(value):
            handles.setdefault(str(item.get("VALUE_TYPE") or "OTHER"), []).append(str(item["VALUE"]))
        for attribute in placement.attributes:
            kind = next((kind for kind in MESSENGERS if attribute == custom_name(f"IM_{kind}")), None)
            if kind in handles:
                self.attributes[attribute] = ", ".join(handles[kind])

    def _websites(self, placement: Placement, value: Any) -> None:
        addresses = [str(item["VALUE"]) for item in _multifield(value)]
        attribute = placement.attributes[0]
        target = self._target(attribute)
        if target is not None and target.type in {"urlMultiple", "array"}:
            self.attributes[attribute] = addresses
            return
        self.attributes[attribute] = addresses[0]
        self.text += [f"{placement.label}: {address}" for address in addresses[1:]]

    def _status(self, placement: Placement, value: Any) -> None:
        option = next((stage.option for stage in self.context.plan.lead_statuses if stage.stage == str(value)), None)
        if option is not None:
            self.attributes[placement.attributes[0]] = option

    def _stage(self, placement: Placement, value: Any) -> None:
        option = next((stage.option for stage in self.context.plan.deal_stages if stage.stage == str(value)), None)
        if option is not None:
            self.attributes[placement.attributes[0]] = option

    def _pipeline(self, placement: Placement, value: Any) -> None:
        pipeline = next((item for item in self.context.source.pipelines if item.id == str(value)), None)
        if pipeline is not None:
            self.attributes[placement.attributes[0]] = pipeline.name

    def _country_code(self, placement: Placement, value: Any) -> None:
        """The country's code only where its name is empty."""
        if _empty(self.record.get(placement.field.removesuffix("_CODE"))):
            self.parts.setdefault(placement.attributes[0], []).append(str(value))

    def _option(self, attribute: str, source_field: SourceField, item: Any) -> str:
        """A list item's option: its label, or the existing option of the same meaning."""
        if source_field.type in ACTIVITY_ENUMS:
            labels = ACTIVITY_ENUMS[source_field.type]
            index = int(item) - 1 if str(item).isdigit() else -1
            return labels[index] if 0 <= index < len(labels) else str(item)
        items = list_items(self.context.source, source_field)
        label = next((option.label for option in items if option.id == str(item)), str(item))
        meaning = STANDARD.get(self.entity, {}).get(source_field.name)
        options_of = meaning.options_of if isinstance(meaning, Meaning) else ""
        owner, _, held_by = options_of.partition(".")  # Opportunity.leadSource takes Lead.source's options
        target = self.context.target.fields.get(owner, {}).get(held_by) if options_of else self._target(attribute)
        if target is None or not target.options:
            return label
        existing = {option.casefold(): option for option in target.options}
        stock = SOURCES if status_type(source_field) == "SOURCE" else None
        return existing_option(existing, str(item), label, stock) or label

    def _link(self, attribute: str, value: Any) -> None:
        kind, many = _LINKS[attribute]
        ids = [link.record_id for item in _ids(value) if (link := self._linked(kind, item)) is not None]
        if many:
            self.attributes[f"{attribute}Ids"] = sorted({*self.attributes.get(f"{attribute}Ids", ()), *ids})
        elif ids:
            self.attributes[f"{attribute}Id"] = ids[0]

    def _linked(self, kind: SourceEntity, source_id: str) -> Link | None:
        link = self.links.get((kind, source_id))
        if link is None:
            self.unlinked.append(f"{kind} {source_id}")
        return link

    def _named(self, value: Any) -> str:
        """A ``crm`` binding as text: the linked record's kind, name and Bitrix24 id."""
        binding = _binding(value)
        return str(value) if binding is None else self._record_named(*binding)

    def _record_named(self, kind: SourceEntity | str, source_id: str) -> str:
        """A record as text: its kind (or object type), the name of its copy and its Bitrix24 id."""
        link = self.links.get((kind, source_id)) if isinstance(kind, SourceEntity) else None
        return f"{kind} {link.name} (Bitrix24 {source_id})" if link else f"{kind} (Bitrix24 {source_id})"

    # activities

    def activity(self) -> None:
        """An activity's standard fields, by the entity its TYPE_ID sends it to (meanings.ACTIVITY_STANDARD)."""
        record, entity, values = self.record, self.entity, self.attributes
        values["name"] = _plain(record.get("SUBJECT") or "")
        owner = self.owners.get(str(record.get("RESPONSIBLE_ID")))
        if owner is not None:
            values["assignedUserId"] = owner.id
        self._parent()
        completed = str(record.get("COMPLETED") or "").upper() == "Y"
        values["status"] = (_COMPLETED if completed else _OPEN)[entity]
        start, end = (_moment(record.get(name)) for name in ("START_TIME", "END_TIME"))
        description = _plain(record.get("DESCRIPTION") or "")
        if entity == "Email":
            values["subject"] = values["name"]  # required, as name and from are (metadata, fixture 56)
            values |= {"dateSent": start or end, "isHtml": str(record.get("DESCRIPTION_TYPE")) == _HTML}
            values["body"] = description
            self._addresses()
        else:
            values["description"] = description
            values |= {"dateStart": start, "dateEnd": end}
        if entity == "Call":
            values["direction"] = _CALL_DIRECTIONS.get(str(record.get("DIRECTION")), "Outbound")
        if entity == "Task":
            values["priority"] = _TASK_PRIORITIES.get(str(record.get("PRIORITY")), "Normal")
        others = self._other_bindings()
        if entity in {"Call", "Meeting"}:
            self._people(others)
            others = [(type_id, source_id) for type_id, source_id in others if _person(type_id) is None]
        if others:  # EspoCRM's activity has one parent: the others are named
            named = (
                self._record_named(ENTITY_OF_TYPE.get(type_id) or f"object type {type_id}", source_id)
                for type_id, source_id in others
            )
            self.text.append(f"{_ALSO_BOUND}: " + "; ".join(named))
        if entity in {"Task", "Email"} and record.get("FILES"):
            self.files["attachments"] = [item for item in _listed(record["FILES"]) if isinstance(item, Mapping)]
        # EspoCRM gives back an empty text as null: an empty value is not written, so a rerun compares equal
        self.attributes = {name: value for name, value in values.items() if value not in (None, "")}

    def _parent(self) -> None:
        """Its owner; a task without one is about the person it names (its first communication)."""
        candidates = [_owner_of(self.record)]
        if self.entity == "Task":
            candidates += _communications(self.record)
        for type_id, source_id in candidates:
            kind = ENTITY_OF_TYPE.get(type_id)
            link = self._linked(kind, source_id) if kind is not None and source_id else None
            if kind is not None and link is not None:
                self.attributes |= {"parentType": TARGET_ENTITY[kind], "parentId": link.record_id}
                return

    def _people(self, bound: list[tuple[str, str]]) -> None:
        """Its contacts and leads: those it was with (its communications) and those it is bound to."""
        ids: dict[str, set[str]] = {"contactsIds": set(), "leadsIds": set()}
        for type_id, source_id in (*_communications(self.record), *bound):
            held = _person(type_id)
            kind = ENTITY_OF_TYPE.get(type_id)
            link = self._linked(kind, source_id) if kind is not None and held else None
            if held and link:
                ids[held].add(link.record_id)
        self.attributes |= {name: sorted(values) for name, values in ids.items() if values}

    def _other_bindings(self) -> list[tuple[str, str]]:
        """Its bindings beyond its owner, as (object type id, id)."""
        owner = _owner_of(self.record)
        return [binding for binding in dict.fromkeys(_bindings(self.record)) if binding != owner]

    def _addresses(self) -> None:
        """An e-mail's other party (incoming: from them; outgoing: to them) and the owner's address."""
        theirs = [
            str(item["VALUE"]) for item in self.record.get("COMMUNICATIONS") or () if "@" in str(item.get("VALUE"))
        ]
        owner = self.owners.get(str(self.record.get("RESPONSIBLE_ID")))
        ours = owner.email if owner and owner.email else None
        incoming = str(self.record.get("DIRECTION")) == "1"
        sender, receivers = (theirs[:1], [ours]) if incoming else ([ours], theirs)
        if (sender and sender[0]) or ours:  # a required sender: the owner's when theirs is unknown
            self.attributes["from"] = sender[0] if sender and sender[0] else ours
        to = [address for address in receivers if address]
        if to:
            self.attributes["to"] = ";".join(to)


_ACTIVITY_FIELDS = frozenset(
    {
        "SUBJECT",
        "RESPONSIBLE_ID",
        "TYPE_ID",
        "OWNER_ID",
        "OWNER_TYPE_ID",
        "BINDINGS",
        "DESCRIPTION",
        "DESCRIPTION_TYPE",
        "START_TIME",
        "END_TIME",
        "COMPLETED",
        "STATUS",
        "DIRECTION",
        "PRIORITY",
        "COMMUNICATIONS",
        "FILES",
        "WEBDAV_ELEMENTS",
    }
)
"""The activity fields :meth:`_Shaper.activity` shapes (their meaning depends on the entity)."""


_ALSO_BOUND = "Also bound to"
"""The description's line naming an activity's bindings its EspoCRM entity has no link for."""


def _owner_of(activity: Mapping[str, Any]) -> tuple[str, str]:
    """An activity's owner as (object type id, id)."""
    return str(activity.get("OWNER_TYPE_ID") or ""), str(activity.get("OWNER_ID") or "")


def _communications(activity: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The records an activity's communications name, as (object type id, id)."""
    items = activity.get("COMMUNICATIONS") or ()
    return [(str(item.get("ENTITY_TYPE_ID")), str(item.get("ENTITY_ID") or "")) for item in items]


def _bindings(activity: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The records an activity is bound to (``crm.activity.binding.list``), as (object type id, id)."""
    items = activity.get("BINDINGS") or ()
    return [
        (str(item.get("entityTypeId")), str(item.get("entityId") or "")) for item in items if isinstance(item, Mapping)
    ]


def _person(type_id: str) -> str | None:
    """The Call's or Meeting's link holding a record of this object type: its contacts or leads."""
    kind = ENTITY_OF_TYPE.get(type_id)
    return {SourceEntity.CONTACT: "contactsIds", SourceEntity.LEAD: "leadsIds"}.get(kind) if kind else None


def _phone(value: str) -> str:
    """A number as EspoCRM stores it (E.164: it parses what starts with +), so a rerun compares equal;
    one that is no phone number as the portal holds it."""
    try:
        return normalize_phone(value)
    except ValueError:
        return value


def _empty(value: Any) -> bool:
    return value is None or value in ("", [], {})


def _listed(value: Any) -> list[Any]:
    if isinstance(value, Mapping) and all(str(key).isdigit() for key in value):
        return list(value.values())  # a multiple field may come as an object keyed by position
    return list(value) if isinstance(value, list | tuple) else [value]


def _ids(value: Any) -> list[str]:
    return [str(item) for item in _listed(value) if not _empty(item) and str(item) != "0"]


def _multifield(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in _listed(value) if isinstance(item, Mapping) and item.get("VALUE")]


def _binding(value: Any) -> tuple[SourceEntity, str] | None:
    if not isinstance(value, str) or "_" not in value:
        return None
    prefix, _, source_id = value.partition("_")
    kind = BINDING_PREFIXES.get(prefix)
    return (kind, source_id) if kind is not None and source_id.isdigit() else None


def _date(value: Any) -> str:
    """A date as EspoCRM's date fields take it: the day the portal shows (its own offset)."""
    return datetime.fromisoformat(str(value)).date().isoformat()


def _moment(value: Any) -> str | None:
    return espocrm_moment(datetime.fromisoformat(str(value))) if not _empty(value) else None


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_plain(item) for item in value)
    if isinstance(value, Mapping):
        return str(value.get("VALUE") or value.get("value") or value)
    return str(value)


def file_name(file: Mapping[str, Any], field_name: str) -> str:
    """A portal file's name where its object gives one (a comment's, an activity's), else the field's
    name and the file's id (a file user field gives none): the move names it so, reconcile expects it."""
    return str(file.get("name") or file.get("NAME") or f"{field_name}-{file.get('id') or file.get('ID') or 'file'}")
