"""The CRMs the worker delivers to: the primary and, during a cutover, its shadow, each built once per container."""

from __future__ import annotations

from collections.abc import Callable

from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.models import Operation
from crm_bridge.providers import CrmProvider, build_provider
from crm_bridge.settings import CrmProviderName, get_settings


class ConfiguredCrms:
    """Routes an operation to its CRM and keeps that CRM's provider (its connections, its pace).

    Settings are read on use, not at construction: broken CRM settings fail an operation (a retryable
    configuration error), never the worker's start."""

    def __init__(self, primary: Callable[[], CrmProvider]) -> None:
        self._primary = primary
        self._shadows: dict[CrmProviderName, CrmProvider] = {}

    def route(self, operation: Operation) -> str:
        """The CRM the operation goes to now (:meth:`crm_bridge.settings.Settings.destination`)."""
        return get_settings().destination(operation.provider).value

    def provider(self, crm: str) -> CrmProvider:
        """The primary's provider is the container's own (``primary``); the shadow's is built on first use."""
        settings = get_settings()
        name = CrmProviderName(crm)
        if name is settings.crm_provider:
            return self._primary()
        if name not in self._shadows:
            self._shadows[name] = build_provider(settings, load_field_mapping(settings.field_mapping_file), name=name)
        return self._shadows[name]
