"""The visitor-session store: one lead per anonymous session, per CRM, forgotten in time."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from crm_bridge.delivery.sessions import DynamoDbVisitorSessions
from crm_bridge.errors import RetryableCrmError

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
