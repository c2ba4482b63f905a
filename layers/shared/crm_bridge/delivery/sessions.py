"""Which lead an anonymous visitor session became, per CRM, in DynamoDB.

A visitor who clicks "Telegram" and later "WhatsApp" is one person: the first click creates a
minimal lead, later ones become activities on it. The key is ``<provider>#<session id>``, so after a
switch of CRM the other CRM's lead ids are never reused; entries expire (DynamoDB TTL on
``expires_at``) once the session cookie is long gone. The session id is a random cookie value,
not personal data, and the item holds nothing else but the lead id, or, while the session's first
click creates its lead, the id of that click's operation (the claim), so that a second click of the
same visitor handled meanwhile (another worker, or the first create still in flight) waits for that
lead instead of creating one of its own. Once the visitor's application moved the session to
another lead, the item keeps the leads it pointed at before and when it moved: a click in flight
then may have landed on one of them, and its retry must not write it again.

Two more kinds of item live beside them, under their own keys so the claim's conditions never meet
them: ``held#<provider>#<session>``, the clicks of a session nothing vouches for yet (a /go request
that started the session: a previewer, a crawler, a script, or a person straight from a partner's
link), written onto its lead once the session returns; and ``clicks#<provider>#<session>#<hour>``,
the session's clicks in an hour, for the cap on what one session may write.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from crm_bridge.errors import RetryableCrmError, SessionLeadInProgress
from crm_bridge.observability import get_logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_SESSION_TTL_DAYS = 90
KEY_ATTRIBUTE = "pk"
TTL_ATTRIBUTE = "expires_at"
CLAIM_SECONDS = 300
"""How long a click's claim on creating its session's lead holds: longer than a create takes,
including the wait before retrying one that got no answer; a crashed claimer's claim lapses."""
HELD_CLICKS_MAX = 20
"""Clicks kept for a session that has no lead yet; more are folded (counted, not kept)."""
HELD_CLICKS_TTL_SECONDS = 30 * 86400
"""How long a click waits for its session to come back (a second click, an application)."""
CLICK_COUNT_TTL_SECONDS = 2 * 3600
CLOCK_SKEW_SECONDS = 60
"""How far the API's clock (a click's receipt) and the worker's (a session re-pointed) may disagree."""
COUNTED_CLICKS_MAX = 100
"""Clicks of one session and hour counted one by one; a flood beyond is just "more" (the item stays small)."""


@cache
def _dynamodb_client() -> DynamoDBClient:
    import boto3

    return boto3.client("dynamodb")


class DynamoDbVisitorSessions:
    """:class:`crm_bridge.delivery.VisitorSessions` backed by a DynamoDB table (key ``pk``)."""

    def __init__(
        self,
        table_name: str,
        *,
        ttl_seconds: int = DEFAULT_SESSION_TTL_DAYS * 86400,
        client: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds
        self._client = client
        self._clock = clock

    @classmethod
    def from_environment(cls) -> DynamoDbVisitorSessions:
        days = int(os.environ.get("SESSION_TTL_DAYS") or DEFAULT_SESSION_TTL_DAYS)
        return cls(os.environ.get("SESSIONS_TABLE", ""), ttl_seconds=days * 86400)

    @property
    def client(self) -> DynamoDBClient:
        return self._client or _dynamodb_client()

    @staticmethod
    def key(provider: str, session_id: str) -> str:
        return f"{provider}#{session_id}"

    def lead_for(self, provider: str, session_id: str, operation_id: str | None = None) -> str | None:
        """The session's lead in this CRM; None when it has none. :class:`SessionLeadInProgress` while
        another operation than ``operation_id`` holds the claim on creating it. A store failure is
        retryable: guessing "no lead" would create a second one."""
        item = self._item(provider, self.key(provider, session_id))
        if not item:
            return None
        if "lead_id" in item:
            return str(item["lead_id"]["S"])
        if item.get("claimed_by", {}).get("S") != operation_id:
            raise SessionLeadInProgress(provider)  # the lead is being created: wait for it
        return None

    def claim(self, provider: str, session_id: str, operation_id: str, *, gone: str | None = None) -> bool:
        """Take the right to create the session's lead for this operation (again, for its retry);
        False while another operation's claim holds or the session has its lead already (unless that
        lead is ``gone``: deleted in the CRM).

        A store failure is retryable: creating without the claim could make a second lead."""
        now = self._clock()
        condition = (
            f"attribute_not_exists({KEY_ATTRIBUTE}) OR {TTL_ATTRIBUTE} < :now"
            " OR (claimed_by = :operation AND attribute_not_exists(lead_id))"
        )
        values = {":now": {"N": str(int(now))}, ":operation": {"S": operation_id}}
        if gone is not None:
            condition += " OR lead_id = :gone"
            values[":gone"] = {"S": gone}
        written = self._conditional_write(
            provider,
            lambda: self.client.put_item(
                TableName=self.table_name,
                Item={
                    KEY_ATTRIBUTE: {"S": self.key(provider, session_id)},
                    "claimed_by": {"S": operation_id},
                    TTL_ATTRIBUTE: {"N": str(int(now + CLAIM_SECONDS))},
                },
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            ),
        )
        return written is not None

    def release(self, provider: str, session_id: str, operation_id: str) -> None:
        """Give the claim up: this operation's create failed and wrote nothing. Never raises (the
        claim lapses by itself)."""
        self._best_effort_write(
            provider,
            "could not release the visitor session's claim; it lapses by itself",
            lambda: self.client.delete_item(
                TableName=self.table_name,
                Key={KEY_ATTRIBUTE: {"S": self.key(provider, session_id)}},
                ConditionExpression="claimed_by = :operation AND attribute_not_exists(lead_id)",
                ExpressionAttributeValues={":operation": {"S": operation_id}},
            ),
        )

    def remember(
        self, provider: str, session_id: str, lead_id: str, *, replace: bool = False, earlier: str | None = None
    ) -> None:
        """Record the session's lead unless one is recorded already (a concurrent first click wins),
        or, with ``replace``, in any case (the visitor applied: their real lead supersedes). The lead
        it supersedes (``earlier``) is kept in the item with the time, for :meth:`earlier_leads`.

        Never raises: the lead exists in the CRM by now, and failing the delivery would create it
        again on retry; without the entry the next click finds the lead by its session attribute
        or, at worst, makes a second minimal lead.
        """
        now = self._clock()
        values: dict[str, Any] = {":lead": {"S": lead_id}, ":expires": {"N": str(int(now + self.ttl_seconds))}}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {KEY_ATTRIBUTE: {"S": self.key(provider, session_id)}},
            "UpdateExpression": f"SET lead_id = :lead, {TTL_ATTRIBUTE} = :expires REMOVE claimed_by",
            "ExpressionAttributeValues": values,
        }
        if not replace:  # a claim gives way to the lead; a recorded lead stays
            request["ConditionExpression"] = f"attribute_not_exists(lead_id) OR {TTL_ATTRIBUTE} < :now"
            values[":now"] = {"N": str(int(now))}
        elif earlier is not None and earlier != lead_id:
            request["UpdateExpression"] = (
                f"SET lead_id = :lead, {TTL_ATTRIBUTE} = :expires, replaced_at = :now"
                " REMOVE claimed_by ADD earlier :earlier"
            )
            values |= {":now": {"N": str(now)}, ":earlier": {"SS": [earlier]}}
        self._best_effort_write(
            provider, "could not remember the visitor session's lead", lambda: self.client.update_item(**request)
        )

    def earlier_leads(self, provider: str, session_id: str, received_at: float) -> list[str]:
        """The leads the session pointed at before, when it was last re-pointed after ``received_at``
        (less :data:`CLOCK_SKEW_SECONDS`): a click received later never saw them. A store failure is
        retryable: guessing "none" could write a click twice."""
        item = self._item(provider, self.key(provider, session_id))
        if not item or float(item.get("replaced_at", {}).get("N", "0")) < received_at - CLOCK_SKEW_SECONDS:
            return []
        return sorted(item.get("earlier", {}).get("SS", []))

    def count_click(self, provider: str, session_id: str, hour: str, operation_id: str) -> int:
        """This session's clicks in ``hour`` (e.g. ``2026120517``), this one included; a retried click
        counts once (a set of operation ids). Past ``COUNTED_CLICKS_MAX`` the set stops growing and
        the answer is more than that. A store failure is retryable."""
        answer = self._conditional_write(
            provider,
            lambda: self.client.update_item(
                TableName=self.table_name,
                Key={KEY_ATTRIBUTE: {"S": f"clicks#{self.key(provider, session_id)}#{hour}"}},
                UpdateExpression=f"ADD clicks :click SET {TTL_ATTRIBUTE} = if_not_exists({TTL_ATTRIBUTE}, :expires)",
                ConditionExpression="attribute_not_exists(clicks) OR size(clicks) < :most OR contains(clicks, :id)",
                ExpressionAttributeValues={
                    ":click": {"SS": [operation_id]},
                    ":id": {"S": operation_id},
                    ":most": {"N": str(COUNTED_CLICKS_MAX)},
                    ":expires": {"N": str(int(self._clock() + CLICK_COUNT_TTL_SECONDS))},
                },
                ReturnValues="ALL_NEW",
            ),
        )
        return COUNTED_CLICKS_MAX + 1 if answer is None else len(answer["Attributes"]["clicks"]["SS"])

    def hold(self, provider: str, session_id: str, click: str) -> bool:
        """Keep a click (its operation, as JSON) until the session returns; False when the session
        has held its most already (the click is then folded). A store failure is retryable."""
        written = self._conditional_write(
            provider,
            lambda: self.client.update_item(
                TableName=self.table_name,
                Key={KEY_ATTRIBUTE: {"S": f"held#{self.key(provider, session_id)}"}},
                UpdateExpression=f"SET held = list_append(if_not_exists(held, :none), :click), {TTL_ATTRIBUTE} = :expires",
                ConditionExpression="attribute_not_exists(held) OR size(held) < :most",
                ExpressionAttributeValues={
                    ":none": {"L": []},
                    ":click": {"L": [{"S": click}]},
                    ":most": {"N": str(HELD_CLICKS_MAX)},
                    ":expires": {"N": str(int(self._clock() + HELD_CLICKS_TTL_SECONDS))},
                },
            ),
        )
        return written is not None

    def held_clicks(self, provider: str, session_id: str) -> list[str]:
        """The clicks held for the session, oldest first. A store failure is retryable."""
        item = self._item(provider, f"held#{self.key(provider, session_id)}") or {}
        return [value["S"] for value in item.get("held", {}).get("L", [])]

    def forget_held(self, provider: str, session_id: str, count: int) -> None:
        """Drop the held clicks once the first ``count`` are on the lead (kept when more arrived
        meanwhile: writing them again is harmless, each carries its operation's marker). Never raises:
        they expire by themselves."""
        self._best_effort_write(
            provider,
            "could not drop the session's held clicks; they expire by themselves",
            lambda: self.client.delete_item(
                TableName=self.table_name,
                Key={KEY_ATTRIBUTE: {"S": f"held#{self.key(provider, session_id)}"}},
                ConditionExpression="size(held) = :count",
                ExpressionAttributeValues={":count": {"N": str(count)}},
            ),
        )

    def _item(self, provider: str, key: str) -> dict[str, Any] | None:
        """The item under ``key``, read consistently; None when there is none or it has expired (TTL
        deletes lazily: an expired item may still be there). A store failure is retryable."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            item = self.client.get_item(
                TableName=self.table_name, Key={KEY_ATTRIBUTE: {"S": key}}, ConsistentRead=True
            ).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(provider, exc) from None
        if not item or float(item.get(TTL_ATTRIBUTE, {}).get("N", "0")) < self._clock():
            return None
        return dict(item)

    @staticmethod
    def _unavailable(provider: str, exc: Exception) -> RetryableCrmError:
        return RetryableCrmError(
            f"visitor session store unavailable ({type(exc).__name__})", provider=provider, code="sessions_store"
        )

    def _conditional_write[T](self, provider: str, write: Callable[[], T]) -> T | None:
        """``write()``'s answer, or None when its condition did not hold; a store failure is retryable."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return write()
        except ClientError as exc:
            if _condition_failed(exc):
                return None
            raise self._unavailable(provider, exc) from None
        except BotoCoreError as exc:
            raise self._unavailable(provider, exc) from None

    @staticmethod
    def _best_effort_write(provider: str, failure: str, write: Callable[[], object]) -> None:
        """``write()``, whose condition may fail (nothing to do then); a store failure is logged, never raised."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            write()
        except (BotoCoreError, ClientError) as exc:
            if not (isinstance(exc, ClientError) and _condition_failed(exc)):
                get_logger().warning(failure, extra={"provider": provider, "error_type": type(exc).__name__})


def _condition_failed(exc: Exception) -> bool:
    response = getattr(exc, "response", {}) or {}
    return bool(response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")
