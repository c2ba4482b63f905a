"""CloudWatch metrics (EMF through Powertools): outcomes and CRM latency, never personal data."""

from __future__ import annotations

import os
from functools import cache

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

NAMESPACE = "CrmBridge"


@cache
def get_metrics() -> Metrics:
    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE))


def count(name: str, value: int = 1) -> None:
    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


def _by(name: str, unit: MetricUnit, value: float, dimension: str, of: str) -> None:
    """A metric with a dimension of its own (its own metric set, so the dimension stays on it)."""
    with single_metric(
        name=name, unit=unit, value=value, namespace=get_metrics().namespace, default_dimensions={dimension: of}
    ):
        pass


def outcome(name: str, provider: str) -> None:
    """An outcome for one CRM, counted once and seen twice: in all (``service``, what the alarms and
    the dashboard's totals read) and per CRM (``provider``: a dual-write's two CRMs apart)."""
    metric = AmazonCloudWatchEMFProvider(namespace=get_metrics().namespace)
    metric.add_metric(name=name, unit=MetricUnit.Count, value=1)
    metric.add_dimensions(provider=provider, **({"service": metric.service} if metric.service else {}))
    metric.flush_metrics()


def crm_latency(provider: str, elapsed_ms: float) -> None:
    """CRM round-trip time, by provider."""
    _by("CrmLatency", MetricUnit.Milliseconds, elapsed_ms, "provider", provider)


def clicks_ignored(reason: str) -> None:
    """A /go request no person made (link previewer, crawler, script, HEAD), by reason."""
    _by("ClicksIgnored", MetricUnit.Count, 1, "reason", reason)


NOT_WRITTEN = frozenset({"held", "folded"})
"""Outcomes of a click that did not reach the CRM (crm_bridge.delivery.execute): no latency to time."""


def delivered(provider: str, action: str, elapsed_ms: float) -> None:
    """A CRM write that succeeded: ``LeadsCreated`` / ``LeadsUpdated`` / ``LeadsUnchanged`` (per CRM too)
    and latency; a click held or folded instead: ``ClicksHeld`` / ``ClicksFolded``."""
    if action in NOT_WRITTEN:
        count(f"Clicks{action.title()}")
        return
    outcome(f"Leads{action.title()}", provider)
    crm_latency(provider, elapsed_ms)
