"""Which domain field goes to which CRM attribute: configuration, not code.

Attribute names vary per CRM install (EspoCRM ``c…`` custom fields, Bitrix ``UF_CRM_…`` ids, list
item ids), so they live in a versioned JSON file: ``default_mapping.json`` beside this module,
deep-merged with an optional override file (``CRM_FIELD_MAPPING_FILE``; a ``null`` removes a
default). The result is validated once at start-up; a typo such as EspoCRM's ``referralCode`` for
``cReferralCode``, which the CRM would silently drop (fixtures 38/39), refuses to start.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crm_bridge.errors import SettingsError
from crm_bridge.models import Channel, UserType

MAPPING_VERSION = 1


class MappedField(StrEnum):
    """Domain fields that a CRM stores in attributes of its own choosing."""

    REFERRAL_CODE = "referral_code"
    USER_TYPE = "user_type"
    PREFERRED_LANGUAGE = "preferred_language"
    PROGRAM = "program"
    UNIVERSITY = "university"
    CONSENT = "consent"
    UTM_SOURCE = "utm_source"
    UTM_MEDIUM = "utm_medium"
    UTM_CAMPAIGN = "utm_campaign"
    UTM_TERM = "utm_term"
    UTM_CONTENT = "utm_content"
    UTM_ID = "utm_id"
    GCLID = "gclid"
    GBRAID = "gbraid"
    WBRAID = "wbraid"
    FBCLID = "fbclid"
    TTCLID = "ttclid"
    MSCLKID = "msclkid"
    YCLID = "yclid"
    CTWA_CLID = "ctwa_clid"
    LANDING_PAGE = "landing_page"
    REFERRER = "referrer"
    FIRST_REFERRAL_CODE = "first_referral_code"
    FIRST_UTM_SOURCE = "first_utm_source"
    FIRST_UTM_MEDIUM = "first_utm_medium"
    FIRST_UTM_CAMPAIGN = "first_utm_campaign"
    FIRST_LANDING_PAGE = "first_landing_page"
    FIRST_REFERRER = "first_referrer"
    FIRST_TOUCH_AT = "first_touch_at"
    CONSENT_VERSION = "consent_version"
    CONSENT_AT = "consent_at"
    CONSENT_PAGE = "consent_page"
    VISITOR_SESSION_ID = "visitor_session_id"
    MESSENGER_CHANNEL = "messenger_channel"
    SOURCE_RECORD = "source_record"
    """The lead a migration copied this one from (``bitrix24:101``): how a rerun finds its copy."""
    SOURCE_CREATED_AT = "source_created_at"
    """When that lead was created in its CRM (a copy's own creation date is the migration's)."""


LAST_TOUCH_FIELDS: tuple[MappedField, ...] = (
    MappedField.REFERRAL_CODE,
    MappedField.UTM_SOURCE,
    MappedField.UTM_MEDIUM,
    MappedField.UTM_CAMPAIGN,
    MappedField.UTM_TERM,
    MappedField.UTM_CONTENT,
    MappedField.UTM_ID,
    MappedField.GCLID,
    MappedField.GBRAID,
    MappedField.WBRAID,
    MappedField.FBCLID,
    MappedField.TTCLID,
    MappedField.MSCLKID,
    MappedField.YCLID,
    MappedField.CTWA_CLID,
    MappedField.LANDING_PAGE,
    MappedField.REFERRER,
)
"""The last touch's values with a field of their own, named like the touch's keys."""
FIRST_TOUCH_FIELDS: dict[str, MappedField] = {
    "referral_code": MappedField.FIRST_REFERRAL_CODE,
    "utm_source": MappedField.FIRST_UTM_SOURCE,
    "utm_medium": MappedField.FIRST_UTM_MEDIUM,
    "utm_campaign": MappedField.FIRST_UTM_CAMPAIGN,
    "landing_page": MappedField.FIRST_LANDING_PAGE,
    "referrer": MappedField.FIRST_REFERRER,
    "touched_at": MappedField.FIRST_TOUCH_AT,
}
"""The first touch's values with a field of their own (the rest is in the lead's description)."""


ENUM_DOMAINS: dict[MappedField, frozenset[str]] = {
    MappedField.USER_TYPE: frozenset(member.value for member in UserType),
    MappedField.MESSENGER_CHANNEL: frozenset(member.value for member in Channel),
}

# EspoCRM Lead attributes that exist on every install (entityDefs/Lead.json) and may be mapped to.
ESPOCRM_NATIVE_ATTRIBUTES = frozenset(
    {"title", "accountName", "website", "industry", "description", "addressCountry", "addressCity"}
)
ESPOCRM_ATTRIBUTE = re.compile(r"[a-z][A-Za-z0-9]{0,62}")
ESPOCRM_CUSTOM_ATTRIBUTE = re.compile(r"c[A-Z][A-Za-z0-9]{0,61}")
# Bitrix24 lead fields that are native (crm.lead.add) rather than UF_CRM_ user fields.
BITRIX24_NATIVE_FIELDS = frozenset(
    {
        "UTM_SOURCE",
        "UTM_MEDIUM",
        "UTM_CAMPAIGN",
        "UTM_CONTENT",
        "UTM_TERM",
        "SOURCE_DESCRIPTION",
        "POST",
        "ADDRESS_CITY",
    }
)
BITRIX24_USER_FIELD = re.compile(r"UF_CRM_[A-Z0-9_]{1,40}")


class LeadSourceKind(StrEnum):
    APPLICATION = "application"
    MESSENGER = "messenger"


class ProviderMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lead_fields: dict[MappedField, str] = Field(default_factory=dict)
    enum_values: dict[MappedField, dict[str, str]] = Field(default_factory=dict)
    lead_source: dict[LeadSourceKind, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _enum_values_cover_their_domain(self) -> Self:
        for field, values in self.enum_values.items():
            domain = ENUM_DOMAINS.get(field)
            if domain is None:
                raise ValueError(f"enum_values.{field}: {field} is not a list field")
            missing = sorted(domain - values.keys())
            unknown = sorted(values.keys() - domain)
            if missing or unknown:
                raise ValueError(
                    f"enum_values.{field}: must map exactly {sorted(domain)}; missing {missing}, unknown {unknown}"
                )
        return self

    def attribute(self, field: MappedField) -> str | None:
        return self.lead_fields.get(field)

    def crm_value(self, field: MappedField, value: str) -> str:
        """A list value as the CRM knows it (EspoCRM option label, Bitrix list item id)."""
        return self.enum_values.get(field, {}).get(value, value)

    def domain_value(self, field: MappedField, value: str) -> str:
        """The reverse of :meth:`crm_value`: a CRM's list value in domain terms (``Student`` -> ``student``)."""
        return next((domain for domain, crm in self.enum_values.get(field, {}).items() if crm == value), value)

    def source_value(self, kind: LeadSourceKind | None) -> str | None:
        """The CRM's lead source for what made the lead; None for a lead copied by a migration."""
        return self.lead_source.get(kind) if kind is not None else None


class EspoCrmMapping(ProviderMapping):
    custom_prefix: bool = Field(
        default=True,
        description="False only for fields created before EspoCRM 8.2, which have no 'c' prefix",
    )

    @model_validator(mode="after")
    def _attribute_names_are_real(self) -> Self:
        for field, attribute in self.lead_fields.items():
            if not ESPOCRM_ATTRIBUTE.fullmatch(attribute):
                raise ValueError(f"lead_fields.{field}: {attribute!r} is not an EspoCRM attribute name")
            if (
                self.custom_prefix
                and attribute not in ESPOCRM_NATIVE_ATTRIBUTES
                and not ESPOCRM_CUSTOM_ATTRIBUTE.fullmatch(attribute)
            ):
                suggestion = "c" + attribute[:1].upper() + attribute[1:]
                raise ValueError(
                    f"lead_fields.{field}: {attribute!r} is neither a native Lead attribute nor a custom "
                    f"one; EspoCRM names custom fields with a 'c' prefix (did you mean {suggestion!r}?)"
                )
        return self


class Bitrix24Mapping(ProviderMapping):
    @model_validator(mode="after")
    def _field_ids_are_real(self) -> Self:
        for field, attribute in self.lead_fields.items():
            if attribute not in BITRIX24_NATIVE_FIELDS and not BITRIX24_USER_FIELD.fullmatch(attribute):
                raise ValueError(
                    f"lead_fields.{field}: {attribute!r} is neither a native lead field "
                    f"({', '.join(sorted(BITRIX24_NATIVE_FIELDS))}) nor a UF_CRM_… user field id"
                )
        return self


SANDBOX_NATIVE_ATTRIBUTES = frozenset(
    {"id", "first_name", "last_name", "phones", "emails", "description", "status", "source", "created_at"}
)
SANDBOX_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]{0,62}")


class SandboxMapping(ProviderMapping):
    """The local sandbox CRM (``make run``): snake_case attributes beside its native ones."""

    @model_validator(mode="after")
    def _attribute_names_are_real(self) -> Self:
        for field, attribute in self.lead_fields.items():
            if not SANDBOX_ATTRIBUTE.fullmatch(attribute) or attribute in SANDBOX_NATIVE_ATTRIBUTES:
                raise ValueError(f"lead_fields.{field}: {attribute!r} is not a sandbox custom attribute name")
        return self


class FieldMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1]
    espocrm: EspoCrmMapping
    bitrix24: Bitrix24Mapping
    sandbox: SandboxMapping


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_field_mapping(override_file: Path | None = None) -> FieldMapping:
    """Defaults merged with the override file, validated; SettingsError says what is wrong where."""
    source = "default_mapping.json"
    data: dict[str, Any] = json.loads(
        resources.files(__package__).joinpath("default_mapping.json").read_text(encoding="utf-8")
    )
    if override_file is not None:
        source = f"CRM_FIELD_MAPPING_FILE ({override_file.name})"
        try:
            override = json.loads(override_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{source}: cannot read it as JSON: {exc}") from None
        if not isinstance(override, dict):
            raise SettingsError(f"{source}: must be a JSON object")
        if override.get("version", MAPPING_VERSION) != MAPPING_VERSION:
            raise SettingsError(
                f"{source}: version {override.get('version')!r} is not supported (use {MAPPING_VERSION})"
            )
        data = _deep_merge(data, override)
    try:
        return FieldMapping.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {str(error['msg']).removeprefix('Value error, ')}"
            for error in exc.errors()
        )
        raise SettingsError(f"{source}: {problems}") from None
