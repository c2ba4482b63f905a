"""Pick the CRM from configuration (``CRM_PROVIDER``), once per Lambda container.

EspoCRM and Bitrix24 are the layer's own. A provider that must never ship in the layer (the sandbox
of ``make run``, :mod:`infra.local.sandbox`) is not imported from here by any name: it registers a
builder with :func:`register_provider` when its own module is imported, which only the local runner
(and the tests) do. A deployed function has nothing registered, so selecting such a provider there
fails at start-up with a configuration error, and the layer never depends on code outside it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from crm_bridge.errors import SettingsError
from crm_bridge.field_mapping import FieldMapping, load_field_mapping
from crm_bridge.providers.base import CrmProvider
from crm_bridge.settings import CrmProviderName, Settings, get_settings

if TYPE_CHECKING:
    import httpx

ProviderBuilder = Callable[[Settings, FieldMapping], CrmProvider]
"""Builds a registered provider from validated settings and the field mapping."""

_REGISTERED: dict[CrmProviderName, ProviderBuilder] = {}


def register_provider(name: CrmProviderName, build: ProviderBuilder) -> None:
    """Offer a provider that is not part of the layer (the local runner's sandbox) under ``name``."""
    _REGISTERED[name] = build


def build_provider(
    settings: Settings,
    mapping: FieldMapping,
    *,
    transport: httpx.BaseTransport | None = None,
    name: CrmProviderName | None = None,
) -> CrmProvider:
    """The provider the settings select (``CRM_PROVIDER``), or the one named by ``name`` (the shadow of a
    dual-write, either side of a migration). Settings validation guarantees the primary's section
    exists; another one without its settings is a :class:`SettingsError`.

    Only the selected provider's module is imported: a deployed function never loads the others. Any
    other provider must have been registered (:func:`register_provider`), which happens in local runs only.

    Raises :class:`crm_bridge.errors.SettingsError` for a provider nobody registered here."""
    chosen = name or settings.crm_provider
    match chosen:
        case CrmProviderName.ESPOCRM if settings.espocrm is not None:
            from crm_bridge.providers.espocrm import EspoCrmProvider

            return EspoCrmProvider(
                settings.espocrm, mapping.espocrm, timeout_seconds=settings.crm_timeout_seconds, transport=transport
            )
        case CrmProviderName.BITRIX24 if settings.bitrix24 is not None:
            from crm_bridge.providers.bitrix24 import Bitrix24Provider

            return Bitrix24Provider(
                settings.bitrix24,
                mapping.bitrix24,
                timeout_seconds=settings.crm_timeout_seconds,
                transport=transport,
                phone_region=settings.default_phone_region,
            )
        case CrmProviderName.ESPOCRM:
            raise SettingsError("invalid configuration: espocrm needs ESPOCRM_URL and ESPOCRM_API_KEY")
        case CrmProviderName.BITRIX24:
            raise SettingsError("invalid configuration: bitrix24 needs BITRIX24_WEBHOOK_URL")
    build = _REGISTERED.get(chosen)
    if build is None:
        raise SettingsError(
            f"invalid configuration: {'CRM_PROVIDER=' if name is None else 'CRM provider '}{chosen} is not available here "
            "(it exists in local runs only: make run)"
        )
    return build(settings, mapping)


@cache
def get_provider() -> CrmProvider:
    """The container's provider: settings and field mapping validated on first use.

    Raises :class:`crm_bridge.errors.SettingsError` naming what is missing or invalid.
    """
    settings = get_settings()
    return build_provider(settings, load_field_mapping(settings.field_mapping_file))
