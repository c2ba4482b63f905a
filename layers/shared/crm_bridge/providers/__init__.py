"""CRM providers: one interface, one implementation per CRM, chosen by configuration."""

from crm_bridge.providers.base import ConnectionReport, CrmProvider, LeadAction, LeadChanges, ProviderResult
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
