"""The whole-CRM move's plan: where every field, stage and owner of the portal goes in EspoCRM.

Pure: it reads the two schemas (:mod:`crm_bridge.migrate.schema`) and decides, writing nothing. A
field goes to an EspoCRM field of the same meaning (:mod:`crm_bridge.migrate.meanings`), else to a
custom field provisioning creates (named after the Bitrix24 field, of the matching type, with the
list's labels), else, only where no field can hold it, into the description; system fields that are
not data are named with the reason. A field it cannot place stops it: nothing is dropped unseen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from pydantic import TypeAdapter

from crm_bridge.field_mapping import FieldMapping, MappedField, load_field_mapping
from crm_bridge.migrate.meanings import (
    ACTIVITY_ENUMS,
    ACTIVITY_STANDARD,
    LEAD_STATUSES,
    LONG_TEXTS,
    MESSENGERS,
    NOT_MOVED,
    SOURCES,
    STANDARD,
    Meaning,
)
from crm_bridge.migrate.schema import (
    ACTIVITY_TARGETS,
    TARGET_ENTITY,
    CustomField,
    EnumOptions,
    Option,
    Provisioning,
    Semantics,
    SourceEntity,
    SourceField,
    SourceSchema,
    SourceUser,
    Stage,
    TargetField,
    TargetSchema,
)

SOURCE_RECORD_LABEL = "Source Record"
"""The label of the key field a moved record carries (``cSourceRecord``: ``bitrix24:company:7``), as
the live flow's provisioning labels the lead's."""
SOURCE_CREATED_AT_LABEL = "Source Created At"
"""… and of when its original was created (EspoCRM's own createdAt is the move's)."""

_SINGLE_TYPES: Mapping[str, str] = {
    "string": "varchar",
    "integer": "int",
    "double": "float",
    "boolean": "bool",
    "char": "bool",
    "date": "date",
    "datetime": "datetime",
    "money": "currency",
    "url": "url",
    "address": "address",
    "file": "file",
    "diskfile": "file",
    "disk_file": "file",
    "employee": "varchar",
    "user": "varchar",
    "crm": "varchar",
    "crm_lead": "varchar",
    "crm_contact": "varchar",
    "crm_company": "varchar",
    "crm_deal": "varchar",
    "crm_entity": "varchar",
    "crm_currency": "varchar",
    "iblock_element": "varchar",
    "iblock_section": "varchar",
}
"""Bitrix24 type → the EspoCRM type of a custom field holding one value."""
_MULTIPLE_TYPES: Mapping[str, str] = {
    "file": "attachmentMultiple",
    "diskfile": "attachmentMultiple",
    "disk_file": "attachmentMultiple",
    "url": "urlMultiple",
}
"""… holding several values (any other multiple field: an ``array`` of its values as text)."""
_LIST_TYPES = frozenset({"enumeration", "crm_status", *ACTIVITY_ENUMS})
_TYPE_NOTES: Mapping[str, str] = {
    "employee": "the paired EspoCRM user's name (see Users)",
    "user": "the paired EspoCRM user's name (see Users)",
    "iblock_element": "the id of the information block element (its name is not readable with the crm scope)",
    "iblock_section": "the id of the information block section (its name is not readable with the crm scope)",
    "crm_currency": "the currency's code",
    **dict.fromkeys(
        ("crm", "crm_lead", "crm_contact", "crm_company", "crm_deal", "crm_entity"),
        "the linked record: its kind, name and Bitrix24 id",
    ),
}


class Where(StrEnum):
    SAME = "same"
    """An EspoCRM field of the same meaning (stock, or the one the lead mapping already writes)."""
    CUSTOM = "custom"
    """A custom field (created by provisioning unless EspoCRM has it)."""
    TEXT = "text"
    """Labelled in the description: no field can hold it."""
    NOT_MOVED = "not moved"
    """A system field that is not data; the note says why."""


@dataclass(frozen=True)
class Placement:
    field: str
    label: str
    where: Where
    attributes: tuple[str, ...] = ()
    note: str = ""
    filled: int | None = None
    """Records holding a value, when the portal reader counted them."""


@dataclass(frozen=True)
class EntityPlan:
    source: SourceEntity
    target: str
    placements: tuple[Placement, ...]
    empty: tuple[str, ...] = ()
    """Fields no record fills: nothing to move."""


@dataclass(frozen=True)
class StageOption:
    """Where a lead status or deal stage goes: an EspoCRM option, existing or new."""

    stage: str
    name: str
    semantics: Semantics
    option: str
    new: bool
    pipeline: str = ""
    probability: int | None = None


@dataclass(frozen=True)
class Owner:
    """Who owns a Bitrix24 user's records in EspoCRM, and how they were paired."""

    user_id: str
    name: str
    active: bool
    user_name: str | None
    paired_by: str


@dataclass(frozen=True)
class MigrationPlan:
    entities: tuple[EntityPlan, ...]
    lead_statuses: tuple[StageOption, ...]
    deal_stages: tuple[StageOption, ...]
    owners: tuple[Owner, ...]
    custom_fields: tuple[CustomField, ...]
    """What provisioning creates before the move writes."""
    enum_options: tuple[EnumOptions, ...]
    """Options provisioning adds to existing enums (statuses, stages, list fields by label)."""
    currencies: tuple[str, ...] | None = None
    """The currencies the records' amounts are in, which EspoCRM must list; None: not read."""

    def provisioning(self) -> Provisioning:
        """What ``python -m infra.espocrm.provision --plan`` creates before the move writes."""
        return Provisioning(self.custom_fields, self.enum_options, self.currencies or ())

    def to_json(self) -> str:
        return _ADAPTER.dump_json(self, indent=2).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> MigrationPlan:
        return _ADAPTER.validate_json(text)

    def digest(self) -> str:
        """The sha256 of the plan's JSON: what a resumed move checks it goes on with (a file only
        reformatted or moved is the same plan)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def report(self) -> str:
        return "\n".join(_report_lines(self))

    def markdown(self) -> str:
        """The plan as docs/migration.md shows it ("What moves where"): tables, entity by entity."""
        return "\n".join(_markdown_lines(self))


_ADAPTER = TypeAdapter(MigrationPlan)


class UnplaceableError(Exception):
    """The plan cannot run: each problem names its entity and field (or user), for the operator to fix."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("the plan cannot place everything: " + "; ".join(self.problems))


def custom_name(bitrix_name: str) -> str:
    """EspoCRM's name for a custom field holding a Bitrix24 one: ``c`` + CamelCase (``UF_CRM_PROGRAM``
    → ``cProgram``, as the lead mapping names it); a code that starts with a digit keeps ``UfCrm``."""
    code = bitrix_name.removeprefix("UF_CRM_")
    if not code[:1].isalpha():
        code = bitrix_name
    return "c" + "".join(part.capitalize() for part in code.split("_") if part)


def make_plan(
    source: SourceSchema,
    target: TargetSchema,
    *,
    user_mapping: Mapping[str, str],
    default_owner: str | None,
    filled: Mapping[SourceEntity, Collection[str]] | None,
    currencies: Collection[str] | None = None,
    field_mapping: FieldMapping | None = None,
) -> MigrationPlan:
    """Place the portal in EspoCRM. ``filled``: per entity, the fields some record holds a value in
    (a mapping of name → count gives the report its counts); without it every field is placed.
    ``currencies``: those the records' amounts are in (None: not read), for provisioning to allow.
    ``user_mapping``: Bitrix24 user id → EspoCRM userName, which wins over pairing by e-mail (an
    operator's choice beats a match). Raises :class:`UnplaceableError` naming what it cannot place."""
    planner = _Planner(source, target, field_mapping or load_field_mapping())
    entities = tuple(
        planner.entity(kind, entity, (filled or {}).get(kind))
        for kind in SourceEntity
        if kind in source.fields
        for entity in _targets(kind)
    )
    lead_statuses = planner.lead_statuses()
    deal_stages = planner.deal_stages()
    owners = planner.owners(user_mapping, default_owner)
    if planner.problems:
        raise UnplaceableError(planner.problems)
    return MigrationPlan(
        entities,
        lead_statuses,
        deal_stages,
        owners,
        tuple(planner.custom_fields.values()),
        planner.enum_options(),
        None if currencies is None else tuple(sorted(currencies)),
    )


def _standard_table(kind: SourceEntity, entity: str) -> Mapping[str, Meaning | str]:
    return (ACTIVITY_STANDARD if kind is SourceEntity.ACTIVITY else STANDARD)[entity]


def _targets(kind: SourceEntity) -> tuple[str, ...]:
    if kind is SourceEntity.ACTIVITY:
        return tuple(dict.fromkeys(ACTIVITY_TARGETS.values()))
    return (TARGET_ENTITY[kind],)


@dataclass
class _Additions:
    """What an existing enum needs: options in the portal's order, their probabilities, which close."""

    options: list[str] = field(default_factory=list)
    probabilities: dict[str, int] = field(default_factory=dict)
    not_actual: list[str] = field(default_factory=list)


class _Planner:
    def __init__(self, source: SourceSchema, target: TargetSchema, mapping: FieldMapping) -> None:
        self.source = source
        self.target = target
        self.problems: list[str] = []
        self.custom_fields: dict[tuple[str, str], CustomField] = {}
        self.additions: dict[tuple[str, str], _Additions] = {}
        self.source_record = mapping.espocrm.lead_fields[MappedField.SOURCE_RECORD]
        self.source_created_at = mapping.espocrm.lead_fields[MappedField.SOURCE_CREATED_AT]
        self.lead_mapped = {
            bitrix: espocrm
            for mapped, bitrix in mapping.bitrix24.lead_fields.items()
            if (espocrm := mapping.espocrm.lead_fields.get(mapped)) is not None
        }

    # fields

    def entity(self, kind: SourceEntity, entity: str, names: Collection[str] | None) -> EntityPlan:
        counts = names if isinstance(names, Mapping) else {}
        if names is not None and kind is SourceEntity.ACTIVITY and any(":" in name for name in names):
            # an activity's fields as filled by the records that go to this entity (Usage.filled)
            counts = {name.partition(":")[2]: counts.get(name) for name in names if name.startswith(f"{entity}:")}
            names = counts
        placements: list[Placement] = []
        empty: list[str] = []
        for source_field in self.source.fields[kind].values():
            if names is not None and source_field.name not in names:
                empty.append(source_field.name)
                continue
            placement = self._place(kind, entity, source_field, names)
            if placement is not None:
                placements.append(replace(placement, filled=counts.get(source_field.name)))
        return EntityPlan(kind, entity, tuple(placements), tuple(empty))

    def _place(
        self, kind: SourceEntity, entity: str, source_field: SourceField, names: Collection[str] | None
    ) -> Placement | None:
        name = source_field.name
        standard = _standard_table(kind, entity).get(name) or NOT_MOVED.get(name)
        if isinstance(standard, str):
            return Placement(name, source_field.title, Where.NOT_MOVED, note=standard)
        if standard is not None:
            return self._standard(kind, entity, source_field, standard)
        if name == "IM":
            return self._messengers(kind, entity, source_field, names)
        special = {
            "ID": self._source_record,
            "DATE_CREATE": self._source_created_at,
            "CREATED": self._source_created_at,
            "LINK": self._text,
            "CATEGORY_ID": self._pipeline,
        }.get(name)
        if special is not None:
            return special(kind, entity, source_field)
        if kind is SourceEntity.LEAD and name in self.lead_mapped:
            return self._custom(kind, entity, source_field, self.lead_mapped[name], mapped=True)
        return self._custom(kind, entity, source_field, custom_name(name))

    def _standard(self, kind: SourceEntity, entity: str, source_field: SourceField, meaning: Meaning) -> Placement:
        if meaning.create is not None:
            name, espocrm_type, label = meaning.create
            holders = ", ".join(
                held
                for held, other in _standard_table(kind, entity).items()
                if isinstance(other, Meaning) and other.create == meaning.create
            )
            self._need(kind, source_field, CustomField(entity, name, espocrm_type, label, source_field=holders))
            return Placement(source_field.name, source_field.title, Where.CUSTOM, meaning.attributes, meaning.note)
        for attribute in meaning.attributes:
            owner, _, name = attribute.rpartition(".")
            if not self._has(owner or entity, name):
                self.problems.append(f"{kind}.{source_field.name}: EspoCRM's {owner or entity} has no {name}")
        if (
            source_field.type == "crm_status"
            and meaning.attributes
            and meaning.attributes[0] not in {"status", "stage"}
        ):
            owner, _, name = (meaning.options_of or f"{entity}.{meaning.attributes[0]}").partition(".")
            statuses = list_items(self.source, source_field)
            stock = SOURCES if status_type(source_field) == "SOURCE" else {}
            self._choose(owner, name, [(status.id, status.label) for status in statuses], stock)
        return Placement(source_field.name, source_field.title, Where.SAME, meaning.attributes, meaning.note)

    def _has(self, entity: str, attribute: str) -> bool:
        """A field, or the currency of a currency field (``amountCurrency``), which metadata does not list."""
        fields = self.target.fields.get(entity, {})
        currency = fields.get(attribute.removesuffix("Currency")) if attribute.endswith("Currency") else None
        return attribute in fields or (currency is not None and currency.type == "currency")

    def _source_record(self, kind: SourceEntity, entity: str, source_field: SourceField) -> Placement:
        return self._exact(
            kind,
            entity,
            source_field,
            CustomField(entity, self.source_record, "varchar", SOURCE_RECORD_LABEL, source_field=source_field.name),
            "the record's key (bitrix24:company:7, a lead's bitrix24:101): how a rerun finds its copy",
        )

    def _source_created_at(self, kind: SourceEntity, entity: str, source_field: SourceField) -> Placement:
        return self._exact(
            kind,
            entity,
            source_field,
            CustomField(
                entity, self.source_created_at, "datetime", SOURCE_CREATED_AT_LABEL, source_field=source_field.name
            ),
            "EspoCRM sets createdAt itself (an API user's is ignored)",
        )

    def _exact(
        self, kind: SourceEntity, entity: str, source_field: SourceField, needed: CustomField, note: str
    ) -> Placement:
        """A field the move itself relies on: the existing one if EspoCRM has it, else created."""
        existing = self._need(kind, source_field, needed, any_type=True)
        where = Where.CUSTOM if existing is None else Where.SAME
        return Placement(source_field.name, source_field.title, where, (needed.name,), _as(note, needed, existing))

    def _messengers(
        self, kind: SourceEntity, entity: str, source_field: SourceField, filled: Collection[str] | None
    ) -> Placement:
        """One varchar per messenger kind; only the kinds in use when ``filled`` names them (``IM.TELEGRAM``)."""
        in_use = {name.removeprefix("IM.") for name in filled or () if name.startswith("IM.")}
        names = []
        for value_type, label in MESSENGERS.items():
            if in_use and value_type not in in_use:
                continue
            name = custom_name(f"IM_{value_type}")
            names.append(name)
            self._need(
                kind,
                source_field,
                CustomField(entity, name, "varchar", f"{source_field.title}: {label}", source_field=source_field.name),
            )
        note = "one field per messenger kind (VALUE_TYPE); several handles of one kind joined by ', '"
        return Placement(source_field.name, source_field.title, Where.CUSTOM, tuple(names), note)

    def _text(self, kind: SourceEntity, entity: str, source_field: SourceField) -> Placement:
        why = "labelled: Bitrix24's documentation gives LINK values no kinds nor format, so no typed field fits"
        description = "body" if entity == "Email" else "description"
        return Placement(source_field.name, source_field.title, Where.TEXT, (description,), why)

    def _pipeline(self, kind: SourceEntity, entity: str, source_field: SourceField) -> Placement:
        name = custom_name(source_field.name)
        options = tuple(pipeline.name for pipeline in self.source.pipelines)
        needed = CustomField(entity, name, "enum", source_field.title, options, source_field.name)
        self._need(kind, source_field, needed)
        note = "the deal's pipeline by name; its stage in stage (see the stage table)"
        return Placement(source_field.name, source_field.title, Where.CUSTOM, (name,), note)

    def _custom(
        self, kind: SourceEntity, entity: str, source_field: SourceField, name: str, *, mapped: bool = False
    ) -> Placement | None:
        kind_of = self._espocrm_type(source_field)
        if kind_of is None:
            self.problems.append(
                f"{kind}.{source_field.name} ({source_field.title!r}): Bitrix24 type {source_field.type!r} "
                "has no place in EspoCRM"
            )
            return None
        espocrm_type, options, type_note = kind_of
        needed = CustomField(entity, name, espocrm_type, source_field.title, options, source_field.name)
        existing = self._need(kind, source_field, needed, any_type=mapped)
        where = Where.SAME if mapped and existing is not None else Where.CUSTOM
        attributes = (name, f"{name}Currency") if espocrm_type == "currency" else (name,)
        note = "; ".join(filter(None, ("the lead mapping's field" if mapped else "", type_note)))
        return Placement(source_field.name, source_field.title, where, attributes, _as(note, needed, existing))

    def _espocrm_type(self, source_field: SourceField) -> tuple[str, tuple[str, ...], str] | None:
        """The EspoCRM type holding this field, its options (a list's labels) and what it holds."""
        bitrix_type = source_field.type
        if bitrix_type in _LIST_TYPES:
            return ("multiEnum" if source_field.multiple else "enum"), self._labels(source_field), "options by label"
        if bitrix_type not in _SINGLE_TYPES:
            return None
        note = _TYPE_NOTES.get(bitrix_type, "")
        if source_field.multiple:
            return _MULTIPLE_TYPES.get(bitrix_type, "array"), (), note
        rows = source_field.settings.get("ROWS")
        if bitrix_type == "string" and (source_field.name in LONG_TEXTS or (isinstance(rows, int) and rows > 1)):
            return "text", (), note
        return _SINGLE_TYPES[bitrix_type], (), note

    def _labels(self, source_field: SourceField) -> tuple[str, ...]:
        if source_field.type in ACTIVITY_ENUMS:
            return ACTIVITY_ENUMS[source_field.type]
        return tuple(option.label for option in list_items(self.source, source_field))

    def _need(
        self, kind: SourceEntity, source_field: SourceField, needed: CustomField, *, any_type: bool = False
    ) -> TargetField | None:
        """Ask provisioning for a field, unless EspoCRM has it (returned). An existing one of another
        type is a conflict, unless ``any_type``: a field the live flow already writes this value to."""
        existing = self.target.fields.get(needed.entity, {}).get(needed.name)
        if existing is not None:
            if existing.type != needed.type and not any_type:
                self.problems.append(
                    f"{kind}.{source_field.name}: EspoCRM's {needed.entity}.{needed.name} is a {existing.type}, "
                    f"the plan needs a {needed.type}"
                )
            elif existing.type in {"enum", "multiEnum"} and needed.options:
                self._choose(needed.entity, needed.name, [(option, option) for option in needed.options])
            return existing
        key = (needed.entity, needed.name)
        planned = self.custom_fields.setdefault(key, needed)
        if planned != needed:
            self.problems.append(
                f"{kind}.{source_field.name}: {needed.entity}.{needed.name} would also hold {planned.source_field}"
            )
        return None

    # lists

    def _choose(
        self, entity: str, attribute: str, items: Sequence[tuple[str, str]], stock: Mapping[str, str] | None = None
    ) -> dict[str, tuple[str, bool]]:
        """Each (id, label) → (option, new): the stock option of the same meaning, else an existing one
        of the same name (case aside), else a new one provisioning adds."""
        existing = self._options(entity, attribute)
        chosen = {}
        for item_id, label in items:
            option = existing_option(existing, item_id, label, stock)
            if option is None:
                option = existing[label.casefold()] = label
                self.additions.setdefault((entity, attribute), _Additions()).options.append(label)
                chosen[item_id] = (option, True)
            else:
                chosen[item_id] = (option, False)
        return chosen

    def _options(self, entity: str, attribute: str) -> dict[str, str]:
        target: TargetField | None = self.target.fields.get(entity, {}).get(attribute)
        planned = self.additions.get((entity, attribute), _Additions()).options
        return {option.casefold(): option for option in (*(target.options if target else ()), *planned) if option}

    def lead_statuses(self) -> tuple[StageOption, ...]:
        """Stock statuses to EspoCRM's of the same meaning, the others to options with their names;
        a new closing one (failure, or success) joins EspoCRM's notActualOptions."""
        if not self.source.lead_statuses:
            return ()
        if "status" not in self.target.fields.get("Lead", {}):
            self.problems.append("lead.STATUS_ID: EspoCRM's Lead has no status")
            return ()
        stages = sorted(self.source.lead_statuses, key=lambda stage: stage.sort)
        chosen = self._choose("Lead", "status", [(stage.id, stage.name) for stage in stages], LEAD_STATUSES)
        for stage in stages:
            option, new = chosen[stage.id]
            if new and stage.semantics is not Semantics.PROCESS:
                self.additions[("Lead", "status")].not_actual.append(option)
        return tuple(StageOption(stage.id, stage.name, stage.semantics, *chosen[stage.id]) for stage in stages)

    def deal_stages(self) -> tuple[StageOption, ...]:
        """Every pipeline's stages to ``Opportunity.stage`` options: the default pipeline's by their
        names, another's as "Pipeline: Stage" (the pipeline itself goes to the deal's CATEGORY_ID
        field); won 100%, lost 0%, in progress between (EspoCRM's probabilityMap)."""
        if not self.source.pipelines:
            return ()
        if "stage" not in self.target.fields.get("Opportunity", {}):
            self.problems.append("deal.STAGE_ID: EspoCRM's Opportunity has no stage")
            return ()
        placed = []
        for pipeline in sorted(self.source.pipelines, key=lambda pipeline: not pipeline.default):
            stages = sorted(pipeline.stages, key=lambda stage: stage.sort)
            names = [
                (stage.id, stage.name if pipeline.default else f"{pipeline.name}: {stage.name}") for stage in stages
            ]
            chosen = self._choose("Opportunity", "stage", names)
            probabilities = self.additions.setdefault(("Opportunity", "stage"), _Additions()).probabilities
            for stage, probability in zip(stages, _probabilities(stages), strict=True):
                option, new = chosen[stage.id]
                probabilities[option] = probability
                placed.append(
                    StageOption(stage.id, stage.name, stage.semantics, option, new, pipeline.name, probability)
                )
        return tuple(placed)

    def enum_options(self) -> tuple[EnumOptions, ...]:
        return tuple(
            EnumOptions(entity, attribute, tuple(added.options), dict(added.probabilities), tuple(added.not_actual))
            for (entity, attribute), added in self.additions.items()
        )

    # users

    def owners(self, user_mapping: Mapping[str, str], default_owner: str | None) -> tuple[Owner, ...]:
        users = {user.user_name: user for user in self.target.users}
        by_email = {
            user.email.casefold(): user.user_name
            for user in sorted(self.target.users, key=lambda user: user.active)  # an active one wins a shared address
            if user.email
        }
        for user_id, user_name in user_mapping.items():
            if user_name not in users:
                self.problems.append(f"users file: Bitrix24 user {user_id} → {user_name!r}, no such EspoCRM user")
        if default_owner is not None and default_owner not in users:
            self.problems.append(f"--default-owner {default_owner!r}: no such EspoCRM user")
        return tuple(self._owner(user, user_mapping, by_email, default_owner) for user in self.source.users)

    def _owner(
        self, user: SourceUser, user_mapping: Mapping[str, str], by_email: Mapping[str, str], default_owner: str | None
    ) -> Owner:
        def owner(user_name: str | None, paired_by: str) -> Owner:
            return Owner(user.id, user.name, user.active, user_name, paired_by)

        if user.id in user_mapping:
            return owner(user_mapping[user.id], "users file")
        if user.email and user.email.casefold() in by_email:
            return owner(by_email[user.email.casefold()], "e-mail")
        if default_owner is not None:
            return owner(default_owner, "default owner (left)" if not user.active else "default owner (unpaired)")
        if user.active:
            self.problems.append(
                f"user {user.id} ({user.name}) is active in Bitrix24 and has no EspoCRM user: "
                "pair them in the users file or name a --default-owner"
            )
        return owner(None, "nobody: their records stay unassigned (no --default-owner)")


def existing_option(
    existing: Mapping[str, str], item_id: str, label: str, stock: Mapping[str, str] | None = None
) -> str | None:
    """The option a list item takes among ``existing`` (casefolded → option): the stock one of the
    same meaning, else one of the same name (case aside); None: a new option (its label). The plan
    chooses by it and the move writes by it, so both agree on every value."""
    option = (stock or {}).get(item_id)
    if option is None or option.casefold() not in existing:
        option = existing.get(label.casefold())
    return option


def _as(note: str, needed: CustomField, existing: TargetField | None) -> str:
    """The note, saying so when an existing field of another type holds the value (as its text)."""
    if existing is None or existing.type == needed.type:
        return note
    return "; ".join(filter(None, (note, f"EspoCRM's field is a {existing.type}: the value as text")))


def _probabilities(stages: Sequence[Stage]) -> list[int]:
    """A pipeline's stages' probabilities: won 100, lost 0, in progress by position between them and
    never 0 (EspoCRM counts a stage of probability 0 as lost, ``StageListPoriver::getLost``)."""
    in_progress = [stage.id for stage in stages if stage.semantics is Semantics.PROCESS]
    step = 100 / (len(in_progress) + 1)
    fixed = {Semantics.SUCCESS: 100, Semantics.FAILURE: 0}
    return [
        fixed[stage.semantics]
        if stage.id not in in_progress
        else max(1, round(step * (in_progress.index(stage.id) + 1)))
        for stage in stages
    ]


def list_items(source: SourceSchema, source_field: SourceField) -> tuple[Option, ...]:
    """A list's items: its own (an enumeration's), else its status list's (``crm.status.list``)."""
    return source_field.options or source.statuses.get(status_type(source_field), ())


def status_type(source_field: SourceField) -> str:
    """Which status list a crm_status field takes its items from (``statusType`` of a standard field,
    ``ENTITY_TYPE`` of a user field's settings)."""
    return str(source_field.settings.get("statusType") or source_field.settings.get("ENTITY_TYPE") or "")


# the report


def _report_lines(plan: MigrationPlan) -> list[str]:
    lines = ["Migration plan: Bitrix24 portal → EspoCRM", ""]
    for entity in plan.entities:
        counts = {where: sum(p.where is where for p in entity.placements) for where in Where}
        summary = ", ".join(f"{count} {where}" for where, count in counts.items() if count)
        lines.append(f"{entity.source} → {entity.target} ({summary})")
        lines.extend(f"  {_placement(placement)}" for placement in entity.placements)
        if entity.empty:
            lines.append(f"  empty in every record (nothing to move): {', '.join(entity.empty)}")
        lines.append("")
    lines.append("Lead statuses → Lead.status")
    lines.extend(f"  {_stage(stage)}" for stage in plan.lead_statuses)
    lines += ["", "Deal pipelines → Opportunity.stage"]
    lines.extend(f"  {_stage(stage)}" for stage in plan.deal_stages)
    lines += ["", "Users → owners"]
    lines.extend(
        f"  {owner.user_id} {owner.name}{'' if owner.active else ' (left)'} → "
        f"{owner.user_name or 'nobody'} ({owner.paired_by})"
        for owner in plan.owners
    )
    lines += ["", f"Provisioning: {len(plan.custom_fields)} custom fields to create"]
    lines.extend(
        f"  {f.entity}.{f.name} ({f.type}) {f.label!r} for {f.source_field}"
        + (f": {', '.join(f.options)}" if f.options else "")
        for f in plan.custom_fields
    )
    lines.append(f"Provisioning: options to add to {len(plan.enum_options)} existing lists")
    lines.extend(
        f"  {o.entity}.{o.attribute}: {', '.join(o.options) or '(probabilities only)'}"
        + (f"; closed: {', '.join(o.not_actual)}" if o.not_actual else "")
        for o in plan.enum_options
    )
    if plan.currencies is None:
        lines.append(
            "Provisioning: currencies not read (plan --count reads the records' amounts: EspoCRM refuses "
            "an amount in a currency it does not list)"
        )
    else:
        lines.append(f"Provisioning: currencies the amounts are in: {', '.join(plan.currencies) or 'none'}")
    return lines


def _placement(placement: Placement) -> str:
    filled = f" [{placement.filled} filled]" if placement.filled is not None else ""
    head = f"{placement.field} {placement.label!r}{filled}"
    if placement.where is Where.NOT_MOVED:
        return f"{head}: not moved, because {placement.note}"
    return f"{head} → {_destination(placement)}" + (f" ({placement.note})" if placement.note else "")


def _destination(placement: Placement) -> str:
    if placement.where is Where.NOT_MOVED:
        return "not moved"
    where = {Where.SAME: "", Where.CUSTOM: "custom ", Where.TEXT: "text in "}[placement.where]
    return where + (", ".join(placement.attributes) or "(the record itself)")


def _markdown_lines(plan: MigrationPlan) -> list[str]:
    lines = []
    for entity in plan.entities:
        lines += [f"### {entity.source} → {entity.target}", "", "| Bitrix24 field | EspoCRM | how, or why not |"]
        lines.append("| --- | --- | --- |")
        lines += [_row(f"`{p.field}` {p.label}", _destination(p), p.note) for p in entity.placements]
        lines.append("")
    lines += ["### Lead statuses → Lead.status", "", "| status | meaning | option |", "| --- | --- | --- |"]
    lines += [_row(f"`{s.stage}` {s.name}", s.semantics, _option(s)) for s in plan.lead_statuses]
    lines += ["", "### Deal pipelines → Opportunity.stage", ""]
    lines += ["| pipeline | stage | meaning | probability | option |", "| --- | --- | --- | --- | --- |"]
    lines += [
        _row(s.pipeline, f"`{s.stage}` {s.name}", s.semantics, f"{s.probability}%", _option(s))
        for s in plan.deal_stages
    ]
    lines += ["", "### Users → owners", "", "| Bitrix24 user | EspoCRM user | how |", "| --- | --- | --- |"]
    lines += [
        _row(f"{o.user_id} {o.name}{'' if o.active else ' (left)'}", o.user_name or "nobody", o.paired_by)
        for o in plan.owners
    ]
    return lines


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _option(stage: StageOption) -> str:
    return f"new: {stage.option}" if stage.new else stage.option


def _stage(stage: StageOption) -> str:
    pipeline = f"[{stage.pipeline}] " if stage.pipeline else ""
    probability = f", {stage.probability}%" if stage.probability is not None else ""
    new = "new option " if stage.new else ""
    return f"{pipeline}{stage.stage} {stage.name!r} ({stage.semantics}{probability}) → {new}{stage.option!r}"
