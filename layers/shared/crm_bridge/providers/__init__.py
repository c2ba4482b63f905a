"""CRM providers: one interface, one implementation per CRM, chosen by configuration.

The factory (and with it httpx and every provider) is imported on first use of ``build_provider`` or
``get_provider``: functions that only queue operations (the redirect, messenger events) use the
interface's types but never talk to a CRM, and should not pay for importing its client at cold start.
"""

import importlib
from typing import TYPE_CHECKING, Any

from crm_bridge.providers.base import ConnectionReport, CrmProvider, LeadAction, LeadChanges, ProviderResult

if TYPE_CHECKING:
    from crm_bridge.providers.factory import build_provider, get_provider

__all__ = [
    "ConnectionReport",
    "CrmProvider",
    "LeadAction",
    "LeadChanges",
    "ProviderResult",
    "build_provider",
    "get_provider",
]

_FROM_FACTORY = frozenset({"build_provider", "get_provider"})


def __getattr__(name: str) -> Any:
    if name in _FROM_FACTORY:
        return getattr(importlib.import_module("crm_bridge.providers.factory"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
