"""Typed settings, validated once at start-up from the environment.

A Lambda that is misconfigured must refuse to start with a message that names each bad setting,
rather than fail on the first lead. Secrets are given either directly (local runs) or as the name
of an SSM parameter / Secrets Manager secret (deployed stacks: ``*_PARAM``), read through
Powertools parameters with an in-memory cache so that a rotated key is picked up without a deploy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    model_validator,
)

from crm_bridge.errors import RefusedCrmError, SettingsError
from crm_bridge.observability.redaction import register_secret

SECRET_CACHE_SECONDS = 300
SECRETS_MANAGER_PREFIX = "secretsmanager:"


class CrmProviderName(StrEnum):
    ESPOCRM = "espocrm"
    BITRIX24 = "bitrix24"
    SANDBOX = "sandbox"
    """Local runs only (``make run``): leads in a SQLite file. The provider is the local runner's
    (``infra/local/sandbox.py``), not in the layer; the template's CrmProvider refuses it."""


def _real_crm(value: object) -> object:
    """A dual-write's shadow is the other side of a migration: a real CRM, never the local sandbox."""
    if value is not None and value not in (CrmProviderName.ESPOCRM, CrmProviderName.BITRIX24):
        raise ValueError("must be espocrm or bitrix24 (or empty: no dual-write)")
    return value


ShadowProviderName = Annotated[CrmProviderName | None, BeforeValidator(_real_crm)]


class SecretSource:
    """A secret given directly or by the name of where it is stored. Never printed."""

    def __init__(self, *, value: str | None = None, parameter_name: str | None = None) -> None:
        if (value is None) == (parameter_name is None):
            raise ValueError("a secret needs exactly one of a value or a parameter name")
        self._value = value
        self.parameter_name = parameter_name
        self._force_fetch = False
        register_secret(value)

    def get(self) -> str:
        """The secret's current value (cached for SECRET_CACHE_SECONDS when it comes from AWS).

        A secret the store cannot give (deleted, or the role may not read it) is a
        :class:`RefusedCrmError`: nothing reached the CRM, and the operation waits on the queue for
        the fix rather than failing its caller. The store's own message (ARNs, names) is not kept."""
        if self.parameter_name is None:
            return str(self._value)
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        from crm_bridge.aws import secrets_provider, ssm_provider

        force, self._force_fetch = self._force_fetch, False
        in_secrets_manager = self.parameter_name.startswith(SECRETS_MANAGER_PREFIX)
        try:
            if in_secrets_manager:
                secret = secrets_provider().get(
                    self.parameter_name.removeprefix(SECRETS_MANAGER_PREFIX),
                    max_age=SECRET_CACHE_SECONDS,
                    force_fetch=force,
                )
            else:
                secret = ssm_provider().get(
                    self.parameter_name, decrypt=True, max_age=SECRET_CACHE_SECONDS, force_fetch=force
                )
        except GetParameterError:
            store = "Secrets Manager" if in_secrets_manager else "SSM"
            raise RefusedCrmError(
                f"the CRM credentials could not be read from {store}",
                provider="crm-bridge",
                code="credentials_unreadable",
            ) from None
        value = secret.decode() if isinstance(secret, bytes) else str(secret)
        register_secret(value)
        return value

    def refresh(self) -> None:
        """Read the secret afresh next time (after the CRM rejected it: it may have been rotated)."""
        self._force_fetch = True

    def __repr__(self) -> str:
        where = f"parameter {self.parameter_name!r}" if self.parameter_name else "environment"
        return f"SecretSource(<redacted>, from {where})"


def _check_region(region: str) -> str:
    import phonenumbers  # on first use: the redirect and messenger functions never read a phone region

    region = region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{region!r} is not a phone region (use an ISO 3166 code such as TR, GB, KZ)")
    return region


PhoneRegion = Annotated[str, AfterValidator(_check_region)]


class EspoCrmSettings(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    url: HttpUrl
    api_key: SecretSource
    hmac_secret: SecretSource | None = None

    @property
    def api_base(self) -> str:
        """``https://crm.example.com/api/v1`` whatever form of the site URL was configured."""
        base = str(self.url).rstrip("/")
        return base if base.endswith("/api/v1") else f"{base}/api/v1"


class Bitrix24Settings(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    webhook: SecretSource
    requests_per_second: float | None = Field(default=None, gt=0, le=5)
    """Pace of this container's requests (``BITRIX24_REQUESTS_PER_SECOND``); None: unpaced. The
    portal allows about 2 requests/s in all (5 on Enterprise plans): the worker's containers together
    (its ``MaximumConcurrency``) must stay below that (see ``providers/pace.py``)."""


class SandboxSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    db_path: Path


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    crm_provider: CrmProviderName
    crm_shadow_provider: ShadowProviderName = None
    """During a cutover, the CRM that also gets every operation, through the queue
    (``crm_bridge.delivery.dual_write``); None: the primary alone."""
    crm_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    default_phone_region: PhoneRegion = "TR"
    field_mapping_file: Path | None = None
    espocrm: EspoCrmSettings | None = None
    bitrix24: Bitrix24Settings | None = None
    sandbox: SandboxSettings | None = None

    @model_validator(mode="after")
    def _selected_providers_are_configured(self) -> Settings:
        if self.crm_shadow_provider == self.crm_provider:
            raise ValueError(
                f"CRM_SHADOW_PROVIDER must differ from CRM_PROVIDER (both are {self.crm_provider}): "
                "a dual-write needs two CRMs"
            )
        for variable, provider in (
            ("CRM_PROVIDER", self.crm_provider),
            ("CRM_SHADOW_PROVIDER", self.crm_shadow_provider),
        ):
            if provider is CrmProviderName.ESPOCRM and self.espocrm is None:
                raise ValueError(f"{variable}=espocrm needs ESPOCRM_URL and ESPOCRM_API_KEY (or ESPOCRM_API_KEY_PARAM)")
            if provider is CrmProviderName.BITRIX24 and self.bitrix24 is None:
                raise ValueError(f"{variable}=bitrix24 needs BITRIX24_WEBHOOK_URL (or BITRIX24_WEBHOOK_URL_PARAM)")
            if provider is CrmProviderName.SANDBOX and self.sandbox is None:
                raise ValueError(f"{variable}=sandbox needs SANDBOX_DB_PATH")
        return self

    @property
    def providers(self) -> tuple[CrmProviderName, ...]:
        """The CRMs operations go to now: the primary, and during a cutover its shadow."""
        return (
            (self.crm_provider,) if self.crm_shadow_provider is None else (self.crm_provider, self.crm_shadow_provider)
        )

    def destination(self, requested: CrmProviderName | None) -> CrmProviderName:
        """The CRM an operation copy made for ``requested`` goes to now: that one while it is configured
        (primary or shadow), else the primary. A copy that names no CRM (every envelope queued before
        dual-writes, and all of them without a shadow) follows the primary, so that switching CRM still
        moves what waits on the queue; a shadow's copy whose shadow was turned off or switched away
        goes to the primary, where its once-only record and the CRM's operation markers stop a second
        write (``crm_bridge.delivery.dual_write``)."""
        return requested if requested in self.providers else self.crm_provider


def _secret(env: Mapping[str, str], name: str, problems: list[str]) -> SecretSource | None:
    value, parameter = env.get(name) or None, env.get(f"{name}_PARAM") or None
    if value and parameter:
        problems.append(f"{name} and {name}_PARAM are both set; set only one")
        return None
    if value:
        return SecretSource(value=value)
    if parameter:
        return SecretSource(parameter_name=parameter)
    return None


def _check_webhook_url(url: str) -> None:
    """Raise ValueError unless ``url`` looks like a Bitrix24 inbound webhook (without echoing it)."""
    parts = url.rstrip("/").split("/")
    if not url.startswith("https://") or len(parts) < 6 or parts[-3] != "rest" or not parts[-2].isdigit():
        raise ValueError("must look like https://<portal>.bitrix24.<tld>/rest/<user id>/<token>/")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate the settings; SettingsError names every missing or invalid variable."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    raw: dict[str, Any] = {
        "crm_provider": env.get("CRM_PROVIDER", ""),
        "crm_shadow_provider": env.get("CRM_SHADOW_PROVIDER") or None,
        "crm_timeout_seconds": env.get("CRM_TIMEOUT_SECONDS") or 5.0,
        "default_phone_region": env.get("DEFAULT_PHONE_REGION") or "TR",
        "field_mapping_file": env.get("CRM_FIELD_MAPPING_FILE") or None,
    }
    provider = env.get("CRM_PROVIDER", "")
    selections = (("CRM_PROVIDER", provider), ("CRM_SHADOW_PROVIDER", raw["crm_shadow_provider"]))

    def chosen(crm: CrmProviderName) -> str | None:
        """The selection of ``crm`` (which then needs its section), if there is one."""
        return next((f"{name}={crm}" for name, value in selections if value == crm), None)

    espocrm_url = env.get("ESPOCRM_URL") or None
    api_key = _secret(env, "ESPOCRM_API_KEY", problems)
    hmac_secret = _secret(env, "ESPOCRM_HMAC_SECRET", problems)
    if espocrm_url and api_key:
        raw["espocrm"] = {"url": espocrm_url, "api_key": api_key, "hmac_secret": hmac_secret}
    elif why := chosen(CrmProviderName.ESPOCRM):
        problems.extend(
            f"{name} is not set (required when {why})"
            for name, present in (("ESPOCRM_URL", espocrm_url), ("ESPOCRM_API_KEY or ESPOCRM_API_KEY_PARAM", api_key))
            if not present
        )
    webhook = _secret(env, "BITRIX24_WEBHOOK_URL", problems)
    if webhook is not None:
        if webhook.parameter_name is None:
            try:
                _check_webhook_url(webhook.get())
            except ValueError as exc:
                problems.append(f"BITRIX24_WEBHOOK_URL: {exc}")
        raw["bitrix24"] = {"webhook": webhook, "requests_per_second": env.get("BITRIX24_REQUESTS_PER_SECOND") or None}
    elif why := chosen(CrmProviderName.BITRIX24):
        problems.append(f"BITRIX24_WEBHOOK_URL or BITRIX24_WEBHOOK_URL_PARAM is not set (required when {why})")
    # The sandbox exists only where someone chose a file for it: a deployed stack never has one.
    sandbox_db_path = env.get("SANDBOX_DB_PATH") or None
    if sandbox_db_path:
        raw["sandbox"] = {"db_path": sandbox_db_path}
    elif provider == CrmProviderName.SANDBOX:
        problems.append("SANDBOX_DB_PATH is not set (required when CRM_PROVIDER=sandbox, which is for local runs only)")
    if problems:
        raise SettingsError("invalid configuration: " + "; ".join(problems))
    settings = validate_environment(Settings, raw, _ENV_NAMES)
    if settings.field_mapping_file is not None and not settings.field_mapping_file.is_file():
        raise SettingsError(f"invalid configuration: CRM_FIELD_MAPPING_FILE: no file at {settings.field_mapping_file}")
    return settings


_ENV_NAMES = {
    ("crm_provider",): "CRM_PROVIDER",
    ("crm_shadow_provider",): "CRM_SHADOW_PROVIDER",
    ("crm_timeout_seconds",): "CRM_TIMEOUT_SECONDS",
    ("default_phone_region",): "DEFAULT_PHONE_REGION",
    ("field_mapping_file",): "CRM_FIELD_MAPPING_FILE",
    ("espocrm", "url"): "ESPOCRM_URL",
    ("bitrix24", "requests_per_second"): "BITRIX24_REQUESTS_PER_SECOND",
    ("sandbox", "db_path"): "SANDBOX_DB_PATH",
}


def validate_environment[M: BaseModel](
    model: type[M], raw: dict[str, Any], env_names: Mapping[tuple[str, ...], str]
) -> M:
    """Validate settings gathered from the environment; SettingsError names each bad variable."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(
            "invalid configuration: " + "; ".join(_describe(error, env_names) for error in exc.errors())
        ) from None


def _describe(error: Any, env_names: Mapping[tuple[str, ...], str]) -> str:
    """A pydantic error in the vocabulary of environment variables, never echoing the value."""
    location = tuple(str(part) for part in error["loc"])
    name = env_names.get(location) or ".".join(location)
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name}: {message}" if name else message


@cache
def get_settings() -> Settings:
    """The process-wide settings, validated on first use (at import time of each handler)."""
    return load_settings()


@cache
def default_phone_region() -> str:
    """Region used to read phone numbers written without a country code."""
    return _check_region(os.environ.get("DEFAULT_PHONE_REGION") or "TR")
