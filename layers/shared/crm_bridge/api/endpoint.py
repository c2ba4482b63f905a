"""How an API function answers an event, with or without Powertools' resolver: one mapping of
failures to answers (a problem of the request, the queue down, a bug of ours).

The redirect and messenger events answer through :func:`serve`, without the event handler and its
import cost, because nearly each of their requests is a cold start (docs/performance.md);
``crm_bridge.api.resolver`` maps the same failures the same way for the resolver-based functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crm_bridge.api.http import INTERNAL_ERROR, HttpProblem, HttpRequest, problem_answer, unavailable
from crm_bridge.delivery.recovery import DeliveryUnavailable
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import count


def delivery_unavailable(error: DeliveryUnavailable) -> HttpProblem:
    count("DeliveryUnavailable")
    return unavailable(error.operation_id)


def internal_error(error: Exception) -> HttpProblem:
    get_logger().exception("unhandled error", extra={"error_type": type(error).__name__})
    return INTERNAL_ERROR


def serve(event: Mapping[str, Any], handle: Callable[[HttpRequest], dict[str, Any]]) -> dict[str, Any]:
    """Answer an HTTP API event with ``handle``; whatever it raises becomes a JSON error answer."""
    try:
        return handle(HttpRequest.from_event(event))
    except HttpProblem as problem:
        return problem_answer(problem)
    except DeliveryUnavailable as error:
        return problem_answer(delivery_unavailable(error))
    except Exception as error:
        return problem_answer(internal_error(error))
