"""An application's synchronous path against a real EspoCRM, against its floor, in the same run.

The CRM is a real EspoCRM 8.4.2 on loopback (``infra/espocrm/local.py``: PHP's built-in server and a
private MariaDB, from the cached install), provisioned by the project's own command. Where it cannot
run, :func:`measure_real_espocrm` raises :class:`EspoCrmUnavailable` saying why, and the bench skips
this figure.

* **Floor**: the CRM requests a new applicant needs, exactly as the EspoCRM provider sends them
  (``crm_bridge/providers/espocrm.py``: ``_find_lead`` then ``_create``): ``GET /api/v1/Lead`` with one
  ``searchParams`` JSON parameter (phone or e-mail equals, ``select=id``, oldest first, at most 5),
  then ``POST /api/v1/Lead`` with the lead's attributes (names, E.164 phone, e-mail, the description
  with everything the applicant said, status, source, the mapped ``c…`` fields), sent back to back by
  a bare ``httpx.Client``.
* **Path**: the applications handler of the built artifact, warm, in process (``real_espocrm_proc.py``),
  its provider pointed at that EspoCRM and its AWS calls (Powertools idempotency, the visitor
  session) at DynamoDB's in-region latency, the figure the backlog drain uses
  (``bench.drain.DYNAMODB_LATENCY_MS`` per call, in memory: ``bench.fake_aws``).

Every iteration is a new applicant on each side (new name, phone, e-mail, session and
``Idempotency-Key``), so every request creates a lead: a reused name would make EspoCRM answer the
create with a 409 of name "duplicates" and the provider send it again. Floor and path alternate.
The ratio of an iteration is its path over its floor.
"""

from __future__ import annotations

import json
import random
import string
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.artifact import Twin
from bench.cold import SITE
from bench.drain import DYNAMODB_LATENCY_MS
from bench.script import run_script
from bench.stack import LoopbackStack
from bench.stats import Spread
from infra.espocrm.local import (
    VERSION,
    EspoCrmUnavailable,
    LocalEspoCrm,
    ensure_installed,
    provision,
    unavailable_reason,
)
from infra.local.http_events import http_api_event

ROOT = Path(__file__).parents[1]
PROC = Path(__file__).with_name("real_espocrm_proc.py")
FUNCTION = "ApplicationsFunction"
TARGET = 1.25
"""Issue 12: an application's synchronous path within 1.25x of its CRM floor."""
PARTS = ("aws", "crm", "provider", "validation", "handler", "aws_calls")
"""What the path's time is made of (``real_espocrm_proc.py``), along its critical path, so that the
first five add up to it: DynamoDB waited for (modelled latency, not hidden behind a CRM request or
another call), the CRM requests as httpx sends them, the provider's own code around them, body
validation, the rest of the handler (event, idempotency record and hash, logging, metrics, answer,
handing work to and from its background thread). ``aws_calls``: the DynamoDB calls' own total, overlapped or not."""

FIRST_NAMES = ("Ayşe", "Mehmet", "Zeynep", "Emre", "Aigerim", "Daniyar", "Olga", "Timur")
PROGRAM = "Medicine"
ATTRIBUTION = {"referral_code": "PARTNER-42", "utm_source": "instagram", "utm_campaign": "spring"}
ESPOCRM_ATTRIBUTES = {"referral_code": "cReferralCode", "utm_source": "cUtmSource", "utm_campaign": "cUtmCampaign"}
"""The default field mapping's attributes for :data:`ATTRIBUTION` (``field_mapping/default_mapping.json``)."""


@dataclass
class RealCrmResult:
    """Per iteration (a new applicant on each side), in ms; the floor's search and create as sent
    back to back, the path's as its provider sent them (``httpx.Client.send``, body read included)."""

    iterations: int
    aws_latency_ms: float
    floor_ms: list[float] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)
    create_ms: list[float] = field(default_factory=list)
    path_ms: list[float] = field(default_factory=list)
    path_search_ms: list[float] = field(default_factory=list)
    path_create_ms: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)
    """Each iteration's path split as :data:`PARTS`."""
    path_requests: dict[str, int] = field(default_factory=dict)
    """CRM requests of all path iterations, by ``METHOD status``."""
    floor_requests: dict[str, int] = field(default_factory=dict)
    aws_operations: dict[str, int] = field(default_factory=dict)
    """AWS calls of all path iterations, by service and operation."""
    differences: list[str] = field(default_factory=list)
    """Where the floor's requests differ from the provider's (method, path, parameters, attributes)."""

    def spread(self, name: str) -> Spread:
        return Spread.of(self.parts[name] if name in self.parts else getattr(self, name))

    @property
    def ratios(self) -> list[float]:
        return [path / floor for path, floor in zip(self.path_ms, self.floor_ms, strict=True)]

    @property
    def rest_ms(self) -> list[float]:
        """Path minus floor, iteration by iteration."""
        return [path - floor for path, floor in zip(self.path_ms, self.floor_ms, strict=True)]

    @property
    def crm_delta_ms(self) -> list[float]:
        """The path's CRM requests minus the whole floor, iteration by iteration: what sending the
        same requests through the provider's client costs beyond the bare one (and any extra request)."""
        return [crm - floor for crm, floor in zip(self.parts["crm"], self.floor_ms, strict=True)]

    def per_iteration(self, counts: dict[str, int]) -> float:
        return sum(counts.values()) / self.iterations


# --- the applicants --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applicant:
    first_name: str
    last_name: str
    phone: str
    """As the form sends it; :attr:`e164` is what the provider stores and searches."""
    email: str
    session_id: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def e164(self) -> str:
        return "+" + "".join(character for character in self.phone if character.isdigit())


class Applicants:
    """New applicants: a phone number from a sequence (never one EspoCRM has), a random surname and
    e-mail, so that no search finds a lead and no create meets a name "duplicate"."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)  # noqa: S311 - test data, not secrets
        self._next = self._random.randrange(1_000_000, 5_000_000)

    def __next__(self) -> Applicant:
        number, self._next = f"{self._next:07d}", self._next + 1
        surname = "".join(self._random.choices(string.ascii_lowercase, k=9)).capitalize()
        tag = uuid.uuid4().hex[:12]
        return Applicant(
            first_name=self._random.choice(FIRST_NAMES),
            last_name=surname,
            phone=f"+90 532 {number[:3]} {number[3:5]} {number[5:]}",
            email=f"applicant.{tag}@example.com",
            session_id=f"bench-{uuid.uuid4().hex[:16]}",
        )


def application_event(applicant: Applicant) -> dict[str, Any]:
    """The form's POST as API Gateway hands it to the function (HTTP API, payload 2.0)."""
    body = {
        "name": applicant.name,
        "phone": applicant.phone,
        "email": applicant.email,
        "user_type": "student",
        "program": PROGRAM,
        "consent": True,
        "session_id": applicant.session_id,
        "attribution": ATTRIBUTION,
    }
    return http_api_event(
        "POST",
        "/api/v1/applications",
        route_key="POST /api/v1/applications",
        headers={
            "content-type": "application/json",
            "origin": SITE,
            "idempotency-key": f"bench-{uuid.uuid4().hex}",
        },
        body=json.dumps(body),
    )


def floor_requests(applicant: Applicant) -> dict[str, Any]:
    """The provider's two requests for this applicant, written out: ``_find_lead``'s search (an
    ``or`` of phone and e-mail, each match's status, up to ``_MATCHES`` of them) and ``_create``'s
    body (``_lead_payload`` with the default mapping, the description as
    ``lead_draft.application_summary`` writes it)."""
    search = {
        "where": [
            {
                "type": "or",
                "value": [
                    {"type": "equals", "attribute": "phoneNumber", "value": applicant.e164},
                    {"type": "equals", "attribute": "emailAddress", "value": applicant.email},
                ],
            }
        ],
        "select": ["id", "status"],
        "orderBy": "createdAt",
        "order": "ASC",
        "maxSize": 20,
    }
    description = "\n".join(
        [
            "Application form on the website.",
            "Applicant: student",
            f"Programme: {PROGRAM}",
            f"Phone: {applicant.e164}",
            f"E-mail: {applicant.email}",
            "Privacy consent: given",
            f"Partner referral code: {ATTRIBUTION['referral_code']}",
            f"Last touch: ref={ATTRIBUTION['referral_code']}, utm_source={ATTRIBUTION['utm_source']}, "
            f"utm_campaign={ATTRIBUTION['utm_campaign']}",
            f"crm-bridge operation {uuid.uuid4()}",
        ]
    )
    body = {
        "firstName": applicant.first_name,
        "lastName": applicant.last_name,
        "phoneNumber": applicant.e164,
        "emailAddress": applicant.email,
        "description": description,
        "status": "New",
        "source": "Web Site",
        **{ESPOCRM_ATTRIBUTES[name]: value for name, value in ATTRIBUTION.items()},
        "cUserType": "Student",
        "cProgram": PROGRAM,
        "cConsent": True,
    }
    return {"params": {"searchParams": json.dumps(search)}, "body": body}


# --- the floor's requests against the provider's ---------------------------------------------------------

_IDENTITY = frozenset({"firstName", "lastName", "phoneNumber", "emailAddress", "value", "description"})
"""What differs from one applicant to the next: compared by presence (the description by its lines' labels)."""


def _shape(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {name: _shape(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    if key == "description" and isinstance(value, str):
        return [line.split(":", 1)[0] if ":" in line else line.split(" ", 2)[:2] for line in value.split("\n")]
    if key in _IDENTITY:
        return f"<{type(value).__name__}>"
    return value


def _request_shape(request: dict[str, Any]) -> dict[str, Any]:
    query = {
        name: _shape(json.loads(value)) if name == "searchParams" else value for name, value in request["query"].items()
    }
    body = _shape(json.loads(request["body"])) if request["body"] else None
    return {
        "request": f"{request['method']} {request['path']}",
        "query": query,
        "headers": request["headers"],
        "body keys": list(body) if isinstance(body, dict) else body,
        "body": body,
    }


def differences(path: list[dict[str, Any]], floor: list[dict[str, Any]]) -> list[str]:
    """How the floor's requests differ from the provider's for a new applicant (empty: the same)."""
    path_shapes, floor_shapes = [_request_shape(r) for r in path], [_request_shape(r) for r in floor]
    found = []
    if [shape["request"] for shape in path_shapes] != [shape["request"] for shape in floor_shapes]:
        found.append(
            "requests: provider "
            + ", ".join(shape["request"] for shape in path_shapes)
            + "; floor "
            + ", ".join(shape["request"] for shape in floor_shapes)
        )
        return found
    for ours, theirs in zip(path_shapes, floor_shapes, strict=True):
        for aspect in ("query", "headers", "body keys", "body"):
            if ours[aspect] != theirs[aspect]:
                found.append(f"{ours['request']} {aspect}: provider {ours[aspect]}, floor {theirs[aspect]}")
                break
    return found


# --- the measurement ----------------------------------------------------------------------------------------


def _environment(stack: LoopbackStack, twin: Twin, crm_url: str, api_key: str) -> dict[str, str]:
    """The function's Lambda environment from the template, its CRM the local EspoCRM (key given
    directly: the SSM read is cached for minutes in a warm container) and every AWS endpoint a
    closed port: a call that escaped the fakes would fail, not be timed."""
    environment = stack.environment(FUNCTION, twin.task(FUNCTION))
    environment.pop("ESPOCRM_API_KEY_PARAM", None)
    return environment | {
        "CRM_PROVIDER": "espocrm",
        "ESPOCRM_URL": crm_url,
        "ESPOCRM_API_KEY": api_key,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }


def measure_real_espocrm(
    twin: Twin,
    stack: LoopbackStack,
    iterations: int,
    progress: Callable[[str], None],
    *,
    warmup: int | None = None,
    aws_latency_ms: float = DYNAMODB_LATENCY_MS,
) -> RealCrmResult:
    """Start and provision a local EspoCRM, then measure; :class:`EspoCrmUnavailable` if it cannot run."""
    reason = unavailable_reason()
    if reason:
        raise EspoCrmUnavailable(reason)
    warmup = max(2, iterations // 10) if warmup is None else warmup
    installation = ensure_installed()
    progress(f"espocrm: starting EspoCRM {VERSION} on loopback and provisioning it")
    with LocalEspoCrm(installation) as espocrm:
        api_key = provision(espocrm.site)
        applicants = Applicants()
        items = []
        for _ in range(warmup + iterations):
            items.append(
                {"event": json.dumps(application_event(next(applicants))), "floor": floor_requests(next(applicants))}
            )
        spec_function = stack.functions[FUNCTION]
        with tempfile.TemporaryDirectory(prefix="crm-bridge-espocrm-bench-") as scratch:
            spec_path = Path(scratch) / "spec.json"
            result_path = Path(scratch) / "result.json"
            spec = {
                "function": FUNCTION,
                "handler": spec_function.handler,
                "timeout_seconds": spec_function.timeout_seconds,
                "memory": spec_function.memory_mb,
                "environ": _environment(stack, twin, espocrm.site.url, api_key),
                "sys_path": twin.sys_path(FUNCTION),
                "extra_path": [str(ROOT)],
                "aws_latency_ms": aws_latency_ms,
                "crm_base": f"{espocrm.site.url}/api/v1",
                "crm_api_key": api_key,
                "iterations": items,
                "warmup": warmup,
                "result_path": str(result_path),
            }
            progress(
                f"espocrm: {iterations} new applicants through the handler and as many through the floor, "
                f"interleaved ({warmup} more first, untimed)"
            )
            run_script(PROC, spec, spec_path, what="the real-EspoCRM figure", timeout=60 + 5 * (warmup + iterations))
            raw = json.loads(result_path.read_text(encoding="utf-8"))
    return _result(raw, iterations, aws_latency_ms)


def _result(raw: dict[str, Any], iterations: int, aws_latency_ms: float) -> RealCrmResult:
    floors, paths = raw["floor"], raw["path"]

    def sent(path: dict[str, Any], method: str) -> float:
        return float(sum(request["ns"] for request in path["requests"] if request["method"] == method)) / 1e6

    return RealCrmResult(
        iterations=iterations,
        aws_latency_ms=aws_latency_ms,
        floor_ms=[floor["ms"] for floor in floors],
        search_ms=[floor["search_ms"] for floor in floors],
        create_ms=[floor["create_ms"] for floor in floors],
        path_ms=[path["ms"] for path in paths],
        path_search_ms=[sent(path, "GET") for path in paths],
        path_create_ms=[sent(path, "POST") for path in paths],
        parts={name: [path["parts"][name] for path in paths] for name in PARTS},
        path_requests=dict(Counter(f"{r['method']} {r['status']}" for path in paths for r in path["requests"])),
        floor_requests=dict(Counter(f"{r['method']} {r['status']}" for floor in floors for r in floor["requests"])),
        aws_operations=dict(sum((Counter(path["aws_operations"]) for path in paths), Counter())),
        differences=differences(paths[0]["requests"], floors[0]["requests"]),
    )
