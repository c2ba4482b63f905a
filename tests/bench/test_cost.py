"""The cost arithmetic of ``make bench`` (bench/cost.py), on known inputs: offline, no build needed."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from bench.cost import (
    ESM_CALLS_PER_BATCH,
    LOG_EVENT_OVERHEAD_BYTES,
    PLATFORM_LOG_BYTES,
    PLATFORM_LOG_LINES,
    FunctionUsage,
    MemoryOption,
    Usage,
    cold_fraction,
    cpu_scale,
    dynamodb_units,
    invocation_cost,
    item_size,
    leads_cost,
    mean_usage,
    memory_choice,
    memory_options,
    monthly_cost,
)
from bench.prices import EU_CENTRAL_1, Prices
from bench.report import render_costs

ONES = Prices(
    lambda_request=1.0,
    lambda_gb_second_arm64=1.0,
    http_api_request=1.0,
    sqs_request=1.0,
    dynamodb_write_unit=1.0,
    dynamodb_read_unit=1.0,
    kms_request=1.0,
    logs_ingested_gb=1.0,
    kms_key_month=1.0,
)
"""Every price a dollar: each cost line then reads as the usage it bills."""


def test_item_sizes_follow_dynamodbs_rules() -> None:
    assert item_size({"id": {"S": "abc"}}) == 2 + 3
    assert item_size({"n": {"N": "12345"}, "b": {"BOOL": True}}) == 1 + 4 + 1 + 1  # 1 byte per 2 digits, +1
    assert item_size({"s": {"S": "ş"}}) == 1 + 2  # UTF-8 bytes, not characters
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + (1 + 1 + 1)
    assert item_size({"l": {"L": [{"S": "ab"}, {"NULL": True}]}}) == 1 + 3 + (1 + 2) + (1 + 1)
    assert item_size({"clicks": {"SS": ["a", "bc"]}}) == 6 + 3


def test_request_units_round_up_per_4_kb_read_and_per_kb_written() -> None:
    assert dynamodb_units("GetItem", 0, consistent=True) == {"read": 1.0}  # a miss is still read
    assert dynamodb_units("GetItem", 4097, consistent=True) == {"read": 2.0}
    assert dynamodb_units("GetItem", 4097, consistent=False) == {"read": 1.0}
    assert dynamodb_units("PutItem", 300, consistent=False) == {"write": 1.0}
    assert dynamodb_units("UpdateItem", 1025, consistent=False) == {"write": 2.0}
    with pytest.raises(ValueError, match="Query"):
        dynamodb_units("Query", 10, consistent=True)


def test_cpu_is_stretched_below_one_full_vcpu_and_round_trips_are_not() -> None:
    assert cpu_scale(1769) == cpu_scale(3538) == 1.0
    assert cpu_scale(128) == pytest.approx(1769 / 128)
    usage = Usage(cpu_ms=10.0, requests=Counter({"dynamodb PutItem": 2, "crm": 1, "sqs SendMessage": 1}))

    assert usage.wait_ms == 2 * 5 + 100 + 10
    assert usage.duration_ms(1769) == 130
    assert usage.duration_ms(128) == math.ceil(10 * 1769 / 128 + 120)  # 259: billed by the millisecond


def test_an_invocation_costs_its_request_duration_calls_and_log_bytes() -> None:
    usage = Usage(
        cpu_ms=20.0,
        requests=Counter({"sqs SendMessage": 1, "kms Encrypt": 2, "crm": 1}),
        read_units=2.0,
        write_units=3.0,
        log_bytes=1000,
        log_lines=4,
    )

    cost = invocation_cost(usage, "ApplicationsFunction", 1024, ONES)

    assert cost["lambda_requests"] == 1.0
    # 1 GB for 20 ms of CPU stretched to 1024 MB's share and 130 ms of round trips (SQS, KMS twice, the CRM)
    assert cost["lambda_duration"] == pytest.approx(1.0 * math.ceil(20 * 1769 / 1024 + 130) / 1000)
    assert cost["http_api"] == 1.0
    assert (cost["sqs"], cost["kms"], cost["dynamodb_read"], cost["dynamodb_write"]) == (1.0, 2.0, 2.0, 3.0)
    events = 4 + PLATFORM_LOG_LINES
    assert cost["logs"] == pytest.approx((1000 + PLATFORM_LOG_BYTES + LOG_EVENT_OVERHEAD_BYTES * events) / 1e9)
    assert invocation_cost(usage, "WorkerFunction", 1024, ONES)["http_api"] == 0.0  # SQS invokes it


def test_measured_invocations_are_averaged_but_for_cpu_time_which_is_their_median() -> None:
    def invocation(cpu_ms: float, *calls: dict[str, Any]) -> dict[str, Any]:
        return {"cpu_ms": cpu_ms, "calls": list(calls), "log_bytes": 100, "log_lines": 1}

    put: dict[str, Any] = {"kind": "aws", "service": "dynamodb", "operation": "PutItem", "units": {"write": 2.0}}
    get: dict[str, Any] = {"kind": "aws", "service": "dynamodb", "operation": "GetItem", "units": {"read": 1.0}}
    crm: dict[str, Any] = {"kind": "http", "method": "POST"}

    usage = mean_usage([invocation(3.0, put, crm), invocation(4.0, put, get, crm), invocation(50.0, put, crm)])

    assert usage.cpu_ms == 4.0  # a collection in one invocation does not move it
    assert usage.requests == {"dynamodb PutItem": 1.0, "dynamodb GetItem": pytest.approx(1 / 3), "crm": 1.0}
    assert usage.write_units == 2.0
    assert usage.read_units == pytest.approx(1 / 3)
    assert (usage.log_bytes, usage.log_lines) == (100.0, 1.0)


def _usages(cold_cpu_ms: float = 100.0) -> dict[str, FunctionUsage]:
    def function(name: str, requests: dict[str, int], memory: int = 1024) -> FunctionUsage:
        warm = Usage(cpu_ms=0.0, requests=Counter(requests))
        cold = Usage(cpu_ms=cold_cpu_ms, requests=Counter(requests))
        return FunctionUsage(name, memory, cold, warm, peak_rss_mb=60.0)

    return {
        "RedirectFunction": function("RedirectFunction", {"sqs SendMessage": 1}),
        "WorkerFunction": function("WorkerFunction", {"dynamodb PutItem": 3, "crm": 2}),
        "ApplicationsFunction": function("ApplicationsFunction", {"crm": 2}),
    }


def test_leads_are_costed_in_the_mix_of_200_clicks_to_25_applications() -> None:
    warm = leads_cost(_usages(), 900, lambda count: 0.0, ONES)

    # 900 leads: 800 clicks (redirect, then the worker) and 100 applications.
    assert warm["lambda_requests"] == pytest.approx(800 + 800 + 100)
    assert warm["http_api"] == pytest.approx(800 + 100)
    assert warm["sqs"] == pytest.approx(800 * 1 + 800 * ESM_CALLS_PER_BATCH.total())
    # Warm, at 1 GB: the redirect's 10 ms, the worker's 215 ms, the application's 200 ms.
    assert warm["lambda_duration"] == pytest.approx(800 * 0.010 + 800 * 0.215 + 100 * 0.200)

    cold = leads_cost(_usages(), 900, lambda count: 1.0, ONES)
    # Each of the 1,700 invocations cold: 100 ms more CPU, stretched to 1024 MB's share.
    assert cold["lambda_duration"] - warm["lambda_duration"] == pytest.approx(
        1700 * math.ceil(100 * 1769 / 1024) / 1000
    )
    half = leads_cost(_usages(), 900, lambda count: 0.5, ONES)
    assert half["lambda_duration"] == pytest.approx((warm["lambda_duration"] + cold["lambda_duration"]) / 2)


def test_a_month_adds_the_keys_fee_and_takes_the_cold_share_from_each_functions_traffic() -> None:
    quiet, busy = monthly_cost(_usages(), 0.001, ONES), monthly_cost(_usages(), 2000, ONES)

    assert quiet["kms"] == pytest.approx(1.0)  # the key, whatever the traffic
    per_lead_quiet = quiet["lambda_duration"] / (0.001 * 365 / 12)
    per_lead_busy = busy["lambda_duration"] / (2000 * 365 / 12)
    assert per_lead_quiet > per_lead_busy  # nearly every invocation cold at a lead a day or less
    assert cold_fraction(0) == 1.0
    assert cold_fraction(144) == pytest.approx(math.exp(-1))  # 0.2 a minute over 12 hours, 5 minutes warm


def test_the_size_is_the_cheapest_within_10_percent_of_the_fastest_that_fits() -> None:
    options = [
        MemoryOption(128, 500, 1.0, fits=False),
        MemoryOption(256, 300, 2.0, fits=True),
        MemoryOption(512, 108, 3.0, fits=True),
        MemoryOption(1024, 100, 4.0, fits=True),
        MemoryOption(1769, 100, 6.0, fits=True),
    ]
    assert memory_choice(options).memory_mb == 512
    assert memory_choice(options[3:]).memory_mb == 1024  # as cheap or faster wins the tie-break by cost
    assert memory_choice([MemoryOption(128, 10, 1.0, fits=False), *options[4:]]).memory_mb == 1769


def test_a_cpu_bound_cold_start_wants_a_full_vcpu_and_a_waiting_invocation_does_not() -> None:
    usages = _usages(cold_cpu_ms=500.0)
    redirect, worker = usages["RedirectFunction"], usages["WorkerFunction"]

    assert memory_choice(memory_options(redirect, redirect.cold, EU_CENTRAL_1)).memory_mb == 1769
    waiting = Usage(cpu_ms=5.0, requests=Counter({"crm": 2}))
    assert memory_choice(memory_options(worker, waiting, EU_CENTRAL_1)).memory_mb == 512
    too_big = FunctionUsage("WorkerFunction", 512, waiting, waiting, peak_rss_mb=600.0)
    assert memory_choice(memory_options(too_big, waiting, EU_CENTRAL_1)).memory_mb == 1024


def test_the_cost_tables_render_every_line_and_the_total() -> None:
    usages = list(_usages().values())
    usages.append(FunctionUsage("MessengerEventsFunction", 1769, Usage(1.0), Usage(1.0), 50.0))

    text = "\n".join(render_costs(usages))

    for label in ("Lambda duration (arm64 GB-s)", "DynamoDB write request units", "CloudWatch Logs ingestion"):
        assert label in text
    assert "month at 2,000 leads/day" in text
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.count("$") == 4
    assert "MessengerEventsFunction" in text
    assert "CHANGE" in text
