"""Pick the CRM from configuration (``CRM_PROVIDER``), once per Lambda container."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from crm_bridge.field_mapping import FieldMapping, load_field_mapping
from crm_bridge.providers.base import CrmProvider
from crm_bridge.settings import CrmProviderName, Settings, get_settings

if TYPE_CHECKING:
    import httpx


def build_provider(
    settings: Settings, mapping: FieldMapping, *, transport: httpx.BaseTransport | None = None
) -> CrmProvider:
    """The provider the settings select. Settings validation guarantees its section exists.

    Only the selected provider's module is imported: a deployed function never loads the others (nor
    the sandbox's SQLite, which is for local runs only)."""
    match settings.crm_provider:
        case CrmProviderName.ESPOCRM if settings.espocrm is not None:
            from crm_bridge.providers.espocrm import EspoCrmProvider

            return EspoCrmProvider(
                settings.espocrm, mapping.espocrm, timeout_seconds=settings.crm_timeout_seconds, transport=transport
            )
        case CrmProviderName.BITRIX24 if settings.bitrix24 is not None:
            from crm_bridge.providers.bitrix24 import Bitrix24Provider

            return Bitrix24Provider(
                settings.bitrix24, mapping.bitrix24, timeout_seconds=settings.crm_timeout_seconds, transport=transport
            )
        case CrmProviderName.SANDBOX if settings.sandbox is not None:
            from crm_bridge.providers.sandbox import SandboxProvider

            return SandboxProvider(settings.sandbox, mapping.sandbox, timeout_seconds=settings.crm_timeout_seconds)
    raise AssertionError(f"settings for {settings.crm_provider} were not validated")  # pragma: no cover


@cache
def get_provider() -> CrmProvider:
    """The container's provider: settings and field mapping validated on first use.

    Raises :class:`crm_bridge.errors.SettingsError` naming what is missing or invalid.
    """
    settings = get_settings()
    return build_provider(settings, load_field_mapping(settings.field_mapping_file))
