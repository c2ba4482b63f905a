"""The visitor-session store: one lead per anonymous session, per CRM, forgotten in time."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from crm_bridge.delivery.sessions import (
    CLAIM_SECONDS,
    CLOCK_SKEW_SECONDS,
    COUNTED_CLICKS_MAX,
    HELD_CLICKS_MAX,
    HELD_CLICKS_TTL_SECONDS,
    DynamoDbVisitorSessions,
)
from crm_bridge.errors import RetryableCrmError, SessionLeadInProgress

TABLE = "sessions"


@pytest.fixture
def sessions() -> Iterator[DynamoDbVisitorSessions]:
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoDbVisitorSessions(TABLE, ttl_seconds=3600, client=boto3.client("dynamodb"), clock=lambda: 1000.0)


def test_a_session_maps_to_its_lead_in_each_crm_separately(sessions: DynamoDbVisitorSessions) -> None:
    sessions.remember("espocrm", "visitor-1", "espo-lead")

    assert sessions.lead_for("espocrm", "visitor-1") == "espo-lead"
    assert sessions.lead_for("bitrix24", "visitor-1") is None
    assert sessions.lead_for("espocrm", "visitor-2") is None


def test_the_first_lead_remembered_wins(sessions: DynamoDbVisitorSessions) -> None:
    sessions.remember("espocrm", "visitor-1", "first")
    sessions.remember("espocrm", "visitor-1", "second")

    assert sessions.lead_for("espocrm", "visitor-1") == "first"


def test_a_session_moved_to_the_applicants_lead_keeps_the_leads_it_left_for_clicks_received_before(
    sessions: DynamoDbVisitorSessions,
) -> None:
    """A click received before the move may have landed on the anonymous lead (its answer lost): its
    retry is told where to look. A click received well after the move never saw that lead."""
    sessions.claim("espocrm", "visitor-1", "click-1")
    sessions.remember("espocrm", "visitor-1", "anonymous")
    sessions.remember("espocrm", "visitor-1", "applicant", replace=True, earlier="anonymous")
    sessions.remember("espocrm", "visitor-1", "successor", replace=True, earlier="applicant")

    assert sessions.lead_for("espocrm", "visitor-1") == "successor"
    assert sessions.earlier_leads("espocrm", "visitor-1", received_at=990.0) == ["anonymous", "applicant"]
    assert sessions.earlier_leads("espocrm", "visitor-1", received_at=1000.0 + CLOCK_SKEW_SECONDS + 1) == []
    assert sessions.earlier_leads("espocrm", "visitor-2", received_at=990.0) == []
    assert sessions.claim("espocrm", "visitor-1", "click-2") is False, "the session has its lead"


def test_an_expired_session_is_forgotten_even_before_dynamodb_deletes_it(sessions: DynamoDbVisitorSessions) -> None:
    sessions.remember("espocrm", "visitor-1", "old-lead")
    later = DynamoDbVisitorSessions(TABLE, ttl_seconds=3600, client=sessions.client, clock=lambda: 1000.0 + 3601)

    assert later.lead_for("espocrm", "visitor-1") is None
    later.remember("espocrm", "visitor-1", "new-lead")
    assert later.lead_for("espocrm", "visitor-1") == "new-lead"


def test_a_store_that_cannot_answer_is_a_retryable_failure_not_a_new_lead(sessions: DynamoDbVisitorSessions) -> None:
    missing = DynamoDbVisitorSessions("no-such-table", client=sessions.client)

    with pytest.raises(RetryableCrmError) as failure:
        missing.lead_for("espocrm", "visitor-1")

    assert failure.value.code == "sessions_store"
    missing.remember("espocrm", "visitor-1", "lead")  # logged, never raised: the lead exists already


def test_one_click_at_a_time_may_create_a_sessions_lead(sessions: DynamoDbVisitorSessions) -> None:
    """Two first clicks of one visitor handled at once (two workers, or the first create still in
    flight after a timeout): the one holding the claim creates, the other waits for its lead."""
    assert sessions.claim("espocrm", "visitor-1", "click-1")
    assert not sessions.claim("espocrm", "visitor-1", "click-2")
    assert sessions.claim("espocrm", "visitor-1", "click-1"), "the claimer's own retry"
    assert sessions.claim("bitrix24", "visitor-1", "click-2"), "claims are per CRM"
    assert sessions.lead_for("espocrm", "visitor-1", "click-1") is None, "a claim is no lead"

    sessions.remember("espocrm", "visitor-1", "lead-1")

    assert sessions.lead_for("espocrm", "visitor-1") == "lead-1"
    assert not sessions.claim("espocrm", "visitor-1", "click-1"), "the session has its lead: nothing to create"
    assert not sessions.claim("espocrm", "visitor-1", "click-2")


def test_a_session_whose_lead_was_deleted_may_be_claimed_for_a_new_one(sessions: DynamoDbVisitorSessions) -> None:
    sessions.remember("espocrm", "visitor-1", "lead-1")

    assert not sessions.claim("espocrm", "visitor-1", "click-2", gone="lead-0"), "only the lead that is gone"
    assert sessions.claim("espocrm", "visitor-1", "click-2", gone="lead-1")
    assert sessions.lead_for("espocrm", "visitor-1", "click-2") is None
    assert not sessions.claim("espocrm", "visitor-1", "click-3", gone="lead-1"), "the claim holds"


def test_a_session_whose_lead_is_being_created_says_so_to_everyone_but_its_creator(
    sessions: DynamoDbVisitorSessions,
) -> None:
    assert sessions.claim("espocrm", "visitor-1", "click-1")

    assert sessions.lead_for("espocrm", "visitor-1", "click-1") is None, "the creator's own retry goes on"
    with pytest.raises(SessionLeadInProgress):
        sessions.lead_for("espocrm", "visitor-1")  # an application of the visitor: it waits for the lead
    sessions.remember("espocrm", "visitor-1", "lead-1")
    assert sessions.lead_for("espocrm", "visitor-1") == "lead-1"


def test_a_create_that_wrote_nothing_gives_its_claim_up(sessions: DynamoDbVisitorSessions) -> None:
    assert sessions.claim("espocrm", "visitor-1", "click-1")
    sessions.release("espocrm", "visitor-1", "click-2")  # not its claim: nothing happens
    assert not sessions.claim("espocrm", "visitor-1", "click-2")

    sessions.release("espocrm", "visitor-1", "click-1")

    assert sessions.claim("espocrm", "visitor-1", "click-2")
    sessions.remember("espocrm", "visitor-1", "lead-2")
    sessions.release("espocrm", "visitor-1", "click-2")  # too late: the lead stays
    assert sessions.lead_for("espocrm", "visitor-1") == "lead-2"


def test_a_crashed_claimers_claim_lapses(sessions: DynamoDbVisitorSessions) -> None:
    assert sessions.claim("espocrm", "visitor-1", "click-1")
    later = DynamoDbVisitorSessions(TABLE, client=sessions.client, clock=lambda: 1000.0 + CLAIM_SECONDS + 1)

    assert later.claim("espocrm", "visitor-1", "click-2")


def test_a_claim_the_store_cannot_answer_is_retryable(sessions: DynamoDbVisitorSessions) -> None:
    missing = DynamoDbVisitorSessions("no-such-table", client=sessions.client)

    with pytest.raises(RetryableCrmError) as failure:
        missing.claim("espocrm", "visitor-1", "click-1")

    assert failure.value.code == "sessions_store"


def test_held_clicks_wait_beside_the_session_without_touching_its_claim(sessions: DynamoDbVisitorSessions) -> None:
    assert sessions.hold("espocrm", "visitor-1", '{"click": 1}')
    assert sessions.hold("espocrm", "visitor-1", '{"click": 2}')

    assert sessions.held_clicks("espocrm", "visitor-1") == ['{"click": 1}', '{"click": 2}']
    assert sessions.held_clicks("bitrix24", "visitor-1") == []
    assert sessions.claim("espocrm", "visitor-1", "click-3"), "held clicks are no claim on the lead"
    sessions.forget_held("espocrm", "visitor-1", 1)
    assert len(sessions.held_clicks("espocrm", "visitor-1")) == 2, "one arrived meanwhile: kept"
    sessions.forget_held("espocrm", "visitor-1", 2)
    assert sessions.held_clicks("espocrm", "visitor-1") == []


def test_a_session_holds_a_bounded_number_of_clicks(sessions: DynamoDbVisitorSessions) -> None:
    held = [sessions.hold("espocrm", "visitor-1", f'{{"click": {n}}}') for n in range(HELD_CLICKS_MAX + 3)]

    assert held == [True] * HELD_CLICKS_MAX + [False] * 3
    assert len(sessions.held_clicks("espocrm", "visitor-1")) == HELD_CLICKS_MAX


def test_clicks_are_counted_per_session_and_hour_a_retry_once(sessions: DynamoDbVisitorSessions) -> None:
    counts = [sessions.count_click("espocrm", "visitor-1", "2026120517", f"click-{n}") for n in range(3)]

    assert counts == [1, 2, 3]
    assert sessions.count_click("espocrm", "visitor-1", "2026120517", "click-1") == 3, "a retry counts once"
    assert sessions.count_click("espocrm", "visitor-1", "2026120518", "click-1") == 1
    assert sessions.count_click("espocrm", "visitor-2", "2026120517", "click-1") == 1
    assert sessions.lead_for("espocrm", "visitor-1") is None


def test_a_flood_of_one_session_stops_growing_its_count(sessions: DynamoDbVisitorSessions) -> None:
    counts = [sessions.count_click("espocrm", "visitor-1", "h", f"click-{n}") for n in range(COUNTED_CLICKS_MAX + 5)]

    assert counts[:COUNTED_CLICKS_MAX] == list(range(1, COUNTED_CLICKS_MAX + 1))
    assert all(count > COUNTED_CLICKS_MAX for count in counts[COUNTED_CLICKS_MAX:])


def test_held_clicks_expire(sessions: DynamoDbVisitorSessions) -> None:
    sessions.hold("espocrm", "visitor-1", '{"click": 1}')
    later = DynamoDbVisitorSessions(TABLE, client=sessions.client, clock=lambda: 1000.0 + HELD_CLICKS_TTL_SECONDS + 1)

    assert later.held_clicks("espocrm", "visitor-1") == []
