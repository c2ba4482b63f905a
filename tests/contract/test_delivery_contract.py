"""The one delivery path, over every provider: what an operation becomes in the CRM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import Mock
from uuid import uuid4

import pytest

from crm_bridge.delivery import deliver
from crm_bridge.delivery.execute import CLICKS_PER_SESSION_PER_HOUR
from crm_bridge.delivery.sessions import HELD_CLICKS_MAX
from crm_bridge.errors import RefusedCrmError, RetryableCrmError, SessionLeadInProgress
from crm_bridge.field_mapping import LeadSourceKind
from crm_bridge.models import Application, MessengerActivity, MessengerClickOperation, Origin, UpsertLeadOperation
from crm_bridge.providers import LeadAction, ProviderResult
from tests.contract.conftest import Crm
from tests.simulators.sessions import MemorySessions

SITE_SESSION = "visitor-session-0042"
"""The session the site's snippet keeps (and an application carries)."""
TAP_SESSION = "tap-session-0001"
"""The API host's own session: the cookie /go set when the visitor tapped a partner's link."""


def click_operation(*, received_at: datetime | None = None, **activity: object) -> MessengerClickOperation:
    """A click as an operation carries it; ``received_at``: when the API took it (its ``created_at``)."""
    payload = MessengerActivity.model_validate({"channel": "telegram", "session_id": SITE_SESSION, **activity})
    received = {"created_at": received_at} if received_at is not None else {}
    return MessengerClickOperation(origin=Origin.MESSENGER_API, payload=payload, **received)


def application_operation(session_id: str = SITE_SESSION) -> UpsertLeadOperation:
    application = Application.model_validate(
        {"name": "Ali Veli", "email": "ali@example.com", "phone": "0532 765 43 21", "session_id": session_id}
    )
    return UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application)


def apply(crm: Crm, sessions: MemorySessions, operation: UpsertLeadOperation | None = None) -> ProviderResult:
    return deliver(operation or application_operation(), crm.provider, sessions)


def everything_on(crm: Crm, lead_id: str) -> str:
    """The lead's values and its timeline's texts, as one text."""
    return "\n".join([*(str(value) for value in crm.sim.lead(lead_id).values()), *crm.sim.timeline(lead_id)])


def test_an_application_operation_upserts_the_lead(crm: Crm) -> None:
    application = Application.model_validate({"name": "Ali Veli", "phone": "+90 532 765 43 21"})
    operation = UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application)

    assert deliver(operation, crm.provider).action is LeadAction.CREATED
    assert deliver(operation, crm.provider).action is LeadAction.UNCHANGED
    assert len(crm.sim.leads()) == 1


def test_anonymous_clicks_of_one_session_become_one_lead_and_its_activities(crm: Crm) -> None:
    sessions = MemorySessions()

    first = deliver(click_operation(), crm.provider, sessions)
    second = deliver(click_operation(channel="whatsapp"), crm.provider, sessions)

    assert first.action is LeadAction.CREATED
    assert second.record_id == first.record_id
    assert sessions.lead_for(crm.provider.name, "visitor-session-0042") == first.record_id
    assert len(crm.sim.leads()) == 1
    assert any("WhatsApp" in note for note in crm.sim.timeline(first.record_id))


def test_a_click_whose_sessions_lead_was_deleted_makes_a_new_one(crm: Crm) -> None:
    """A salesperson deleted the visitor's anonymous lead: the next click is a new lead, and the
    session follows it, rather than a click retried until it is a dead letter."""
    sessions = MemorySessions()
    deleted = deliver(click_operation(), crm.provider, sessions).record_id
    crm.sim.delete_lead(deleted)

    again = deliver(click_operation(channel="whatsapp"), crm.provider, sessions)

    assert again.action is LeadAction.CREATED
    assert sessions.lead_for(crm.provider.name, SITE_SESSION) == again.record_id != deleted


def test_a_second_first_click_waits_for_the_lead_the_first_is_creating(crm: Crm) -> None:
    """Two first clicks of one visitor at once (two workers, or the first create still in flight
    after a timeout): the second is retried later and lands on the first one's lead."""
    sessions = MemorySessions()
    first, second = click_operation(), click_operation(channel="whatsapp")
    assert sessions.claim(crm.provider.name, "visitor-session-0042", str(first.operation_id))

    with pytest.raises(RetryableCrmError) as waiting:
        deliver(second, crm.provider, sessions)
    assert waiting.value.code == "session_claimed"
    assert crm.sim.leads() == []

    created = deliver(first, crm.provider, sessions)
    retried = deliver(second, crm.provider, sessions)

    assert retried.record_id == created.record_id
    assert len(crm.sim.leads()) == 1
    assert any("WhatsApp" in note for note in crm.sim.timeline(created.record_id))


def test_an_application_while_a_click_is_creating_the_visitors_lead_waits_and_completes_it(crm: Crm) -> None:
    """The visitor's first click created their anonymous lead but got no answer (it keeps its claim), and
    the application arrives before the click's retry: it waits (is retried) rather than make a lead of
    its own, onto which the click's retry would then write the click a second time."""
    sessions = MemorySessions()
    click = click_operation()
    assert sessions.claim(crm.provider.name, SITE_SESSION, str(click.operation_id))
    crm.provider.create_minimal_lead_from_activity(click.payload, click.operation_id)  # landed, answer lost
    application = application_operation()

    with pytest.raises(SessionLeadInProgress):
        apply(crm, sessions, application)
    clicked = deliver(click, crm.provider, sessions)
    applied = apply(crm, sessions, application)

    assert clicked.action is LeadAction.UNCHANGED
    assert applied.record_id == clicked.record_id
    assert len(crm.sim.leads()) == 1
    assert everything_on(crm, clicked.record_id).count('"message us on Telegram"') == 1, "the click once"
    assert crm.sim.lead_emails(clicked.record_id) == ["ali@example.com"]


def test_a_click_whose_create_failed_after_landing_keeps_its_claim_for_its_retry(
    crm: Crm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CRM made the click's lead and then answered 500: nothing says whether it wrote, so the click
    keeps its claim; the visitor's application waits for the retry instead of making a second lead."""
    sessions = MemorySessions()
    create = crm.provider.create_minimal_lead_from_activity

    def lands_then_fails(*args: object, **kwargs: object) -> object:
        create(*args, **kwargs)  # type: ignore[arg-type]
        raise RetryableCrmError("Internal Server Error", provider=crm.provider.name, status=500)

    monkeypatch.setattr(crm.provider, "create_minimal_lead_from_activity", lands_then_fails)
    click = click_operation()
    with pytest.raises(RetryableCrmError):
        deliver(click, crm.provider, sessions)
    monkeypatch.undo()
    application = application_operation()

    with pytest.raises(SessionLeadInProgress):
        apply(crm, sessions, application)
    clicked = deliver(click, crm.provider, sessions)
    applied = apply(crm, sessions, application)

    assert applied.record_id == clicked.record_id
    assert len(crm.sim.leads()) == 1
    assert everything_on(crm, clicked.record_id).count('"message us on Telegram"') == 1, "the click once"


def test_a_click_whose_create_was_refused_leaves_the_session_to_the_next_click(
    crm: Crm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rate limit or maintenance mode turned the create away before it ran: nothing waits for it, the
    visitor's next click makes the lead, and the refused click's retry becomes a note on that lead."""
    sessions = MemorySessions()
    monkeypatch.setattr(
        crm.provider,
        "create_minimal_lead_from_activity",
        Mock(side_effect=RefusedCrmError("rate limit exceeded", provider=crm.provider.name, status=429)),
    )
    refused = click_operation()
    with pytest.raises(RefusedCrmError):
        deliver(refused, crm.provider, sessions)
    monkeypatch.undo()

    created = deliver(click_operation(channel="whatsapp"), crm.provider, sessions)
    retried = deliver(refused, crm.provider, sessions)

    assert created.action is LeadAction.CREATED
    assert retried.record_id == created.record_id
    assert len(crm.sim.leads()) == 1


def test_a_lead_id_in_an_earlier_releases_envelope_is_never_written_onto(crm: Crm) -> None:
    """Envelopes queued before lead ids stopped leaving the API may carry one the website sent: any
    caller could send any id, so it is ignored and the click goes to its visitor session's lead."""
    other = crm.provider.upsert_lead(
        Application.model_validate({"name": "Ali Veli", "email": "ali@example.com"}), uuid4()
    ).record_id
    notes_before = list(crm.sim.timeline(other))

    result = deliver(click_operation(lead_id=other), crm.provider, MemorySessions())

    assert result.action is LeadAction.CREATED
    assert result.record_id != other
    assert crm.sim.timeline(other) == notes_before


def test_an_application_completes_the_anonymous_lead_of_its_visitors_clicks(crm: Crm) -> None:
    """Click first, apply later: one lead, with the click and the application, named and reachable;
    later clicks land on it too."""
    sessions = MemorySessions()
    anonymous = deliver(click_operation(), crm.provider, sessions).record_id
    application = Application.model_validate(
        {
            "name": "Ali Veli",
            "email": "ali@example.com",
            "phone": "0532 765 43 21",
            "session_id": "visitor-session-0042",
        }
    )
    operation = UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application)

    applicant = deliver(operation, crm.provider, sessions)
    retried = deliver(operation, crm.provider, sessions)
    later = deliver(click_operation(channel="instagram"), crm.provider, sessions)

    assert applicant.record_id == anonymous == later.record_id == retried.record_id
    assert (applicant.action, retried.action) == (LeadAction.UPDATED, LeadAction.UNCHANGED)
    (lead,) = crm.sim.leads()
    assert crm.sim.lead_emails(anonymous) == ["ali@example.com"]
    assert crm.sim.lead_phones(anonymous) in (["+905327654321"], ["05327654321"])
    last_name = {"espocrm": "lastName", "bitrix24": "LAST_NAME", "sandbox": "last_name"}[crm.provider.name]
    assert lead[last_name] == "Veli", "the application's name replaces the visitor placeholder"
    source = {"espocrm": "source", "bitrix24": "SOURCE_ID", "sandbox": "source"}[crm.provider.name]
    assert lead[source] == crm.provider.mapping.lead_source[LeadSourceKind.APPLICATION]
    timeline = "\n".join([*(str(value) for value in lead.values()), *crm.sim.timeline(anonymous)])
    assert "Telegram" in timeline
    assert "Instagram" in timeline
    assert sum("Application form on the website." in note for note in crm.sim.timeline(anonymous)) == 1


@pytest.mark.parametrize("cut_short", ["_add_note", "_update"])
def test_an_application_completing_an_anonymous_lead_cut_short_is_written_once_on_retry(
    crm: Crm, monkeypatch: pytest.MonkeyPatch, cut_short: str
) -> None:
    """The CRM fails one of the completion's writes (the note, or the update that names the lead): the
    retry writes what is missing, and the lead holds the application once, never as "submitted again"."""
    sessions = MemorySessions()
    anonymous = deliver(click_operation(), crm.provider, sessions).record_id
    write = getattr(crm.provider, cut_short)
    failures = iter([RetryableCrmError("the CRM went away", provider=crm.provider.name)])

    def fails_once(*args: object, **kwargs: object) -> object:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return write(*args, **kwargs)

    monkeypatch.setattr(crm.provider, cut_short, fails_once)
    operation = application_operation()
    with pytest.raises(RetryableCrmError):
        apply(crm, sessions, operation)
    retried = apply(crm, sessions, operation)

    assert retried.record_id == anonymous
    assert len(crm.sim.leads()) == 1
    assert crm.sim.lead_emails(anonymous) == ["ali@example.com"]
    timeline = crm.sim.timeline(anonymous)
    assert sum("Application form on the website." in note for note in timeline) == 1
    assert not any("again" in note for note in timeline)


def test_an_application_matching_someone_else_leaves_the_anonymous_lead_alone(crm: Crm) -> None:
    """The session's anonymous lead is completed only when nobody has the phone or e-mail yet: a known
    applicant's lead is updated as before, and the session follows it."""
    sessions = MemorySessions()
    known = crm.provider.upsert_lead(
        Application.model_validate({"name": "Ali Veli", "email": "ali@example.com"}), uuid4()
    ).record_id
    anonymous = deliver(click_operation(), crm.provider, sessions).record_id
    application = Application.model_validate(
        {"name": "Ali Veli", "email": "ali@example.com", "session_id": "visitor-session-0042"}
    )

    applicant = deliver(
        UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application), crm.provider, sessions
    )
    later = deliver(click_operation(channel="instagram"), crm.provider, sessions)

    assert applicant.record_id == known == later.record_id != anonymous
    assert crm.sim.lead_emails(anonymous) == []
    assert any("Instagram" in note for note in crm.sim.timeline(known))


def test_a_click_whose_session_the_redirect_started_is_held_until_the_session_returns(crm: Crm) -> None:
    """Nothing shows a person behind a /go request without a session (a previewer that passed the
    User-Agent check, a crawler, a script): no lead. When the session comes back, the held click
    is written onto its lead, once."""
    sessions = MemorySessions()
    first = deliver(click_operation(session_started=True, attribution={"referral_code": "P-7"}), crm.provider, sessions)

    assert first.action is LeadAction.HELD
    assert crm.sim.leads() == []

    second = click_operation(channel="whatsapp")
    returned = deliver(second, crm.provider, sessions)
    again = deliver(second, crm.provider, sessions)  # a retry: the held click is not written twice

    assert returned.action is LeadAction.CREATED
    assert again.record_id == returned.record_id
    assert len(crm.sim.leads()) == 1
    timeline = crm.sim.timeline(returned.record_id)
    assert sum("Telegram" in note and "P-7" in note for note in timeline) == 1
    assert sessions.held_clicks(crm.provider.name, "visitor-session-0042") == []


def test_an_application_brings_its_sessions_held_clicks_onto_its_lead(crm: Crm) -> None:
    sessions = MemorySessions()
    deliver(click_operation(session_started=True), crm.provider, sessions)
    application = Application.model_validate(
        {"name": "Ali Veli", "email": "ali@example.com", "session_id": "visitor-session-0042"}
    )

    applicant = deliver(
        UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application), crm.provider, sessions
    )

    assert applicant.action is LeadAction.CREATED
    assert len(crm.sim.leads()) == 1
    assert any("Telegram" in note for note in crm.sim.timeline(applicant.record_id))


def test_clicks_over_a_sessions_hourly_cap_are_folded(crm: Crm) -> None:
    sessions = MemorySessions()
    received = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    results = [
        deliver(click_operation(received_at=received), crm.provider, sessions)
        for _ in range(CLICKS_PER_SESSION_PER_HOUR + 2)
    ]

    assert [result.action for result in results].count(LeadAction.FOLDED) == 2
    assert len(crm.sim.leads()) == 1
    assert len({result.record_id for result in results if result.action is not LeadAction.FOLDED}) == 1


def test_the_hourly_cap_counts_by_the_hour_a_click_was_received_not_the_one_it_claims(crm: Crm) -> None:
    """``occurred_at`` is the browser's word: 30 clicks claiming 30 different hours, received in one,
    are one hour's clicks."""
    sessions = MemorySessions()
    received = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    results = [
        deliver(
            click_operation(occurred_at=received - timedelta(hours=hour), received_at=received), crm.provider, sessions
        )
        for hour in range(30)
    ]

    actions = [result.action for result in results]
    assert actions.count(LeadAction.FOLDED) == 30 - CLICKS_PER_SESSION_PER_HOUR
    assert len(crm.sim.leads()) == 1
    assert len(crm.sim.timeline(results[0].record_id)) == CLICKS_PER_SESSION_PER_HOUR - 1


def test_a_flood_of_clicks_nothing_vouches_for_writes_nothing_and_dead_letters_nothing(crm: Crm) -> None:
    """100 clicks of a session the redirect started, a day of them within the hourly cap: the first
    HELD_CLICKS_MAX are held, the rest folded, and a folded click writes nothing (it used to write the
    held ones onto lead "" and fail for good: a dead letter per click). When the session returns, the
    held ones are written once."""
    sessions = MemorySessions()
    start = datetime(2026, 12, 7, tzinfo=UTC)
    results = [
        deliver(
            click_operation(session_started=True, received_at=start + timedelta(minutes=15 * index)),
            crm.provider,
            sessions,
        )
        for index in range(100)
    ]

    actions = [result.action for result in results]
    assert (actions.count(LeadAction.HELD), actions.count(LeadAction.FOLDED)) == (
        HELD_CLICKS_MAX,
        100 - HELD_CLICKS_MAX,
    )
    assert crm.sim.leads() == []

    returned = deliver(click_operation(channel="whatsapp"), crm.provider, sessions)
    assert returned.action is LeadAction.CREATED
    assert len(crm.sim.leads()) == 1
    assert len(crm.sim.timeline(returned.record_id)) == HELD_CLICKS_MAX


@pytest.mark.parametrize("application_first", [False, True], ids=["click, then application", "application, then click"])
def test_a_partner_tap_a_click_on_the_site_and_the_application_are_one_lead(crm: Crm, application_first: bool) -> None:
    """No shared cookie domain: the tap on a partner's link left the API host its own session (the click
    held), the site's snippet keeps another, and a click on the site carries both (the site's from the
    link, the API host's from its cookie): the redirect links them, so the tap, the click and the
    application are one lead, whichever of the click and the application arrives first."""
    sessions = MemorySessions()
    tap = click_operation(session_id=TAP_SESSION, session_started=True, attribution={"referral_code": "P-7"})
    assert deliver(tap, crm.provider, sessions).action is LeadAction.HELD
    site_click = click_operation(channel="whatsapp", linked_session_id=TAP_SESSION)

    if application_first:
        applicant = apply(crm, sessions)
        clicked = deliver(site_click, crm.provider, sessions)
    else:
        clicked = deliver(site_click, crm.provider, sessions)
        applicant = apply(crm, sessions)
    later_tap = deliver(click_operation(session_id=TAP_SESSION, channel="instagram"), crm.provider, sessions)

    assert applicant.record_id == clicked.record_id == later_tap.record_id
    assert len(crm.sim.leads()) == 1
    lead = everything_on(crm, applicant.record_id)
    assert lead.count('"message us on Telegram"') == 1, "the partner tap, once"
    assert "ref=P-7" in lead
    assert lead.count('"message us on WhatsApp"') == 1
    assert lead.count('"message us on Instagram"') == 1
    assert sessions.held_clicks(crm.provider.name, TAP_SESSION) == []


@pytest.mark.parametrize("cut_short", ["the click's note", "a held click's note"])
def test_a_click_retried_after_the_visitors_application_moved_the_session_is_written_once(
    crm: Crm, monkeypatch: pytest.MonkeyPatch, cut_short: str
) -> None:
    """A click's note landed on the session's anonymous lead and its answer was lost; before its retry
    the visitor applied, matched their existing lead, and the session followed it. The retry finds the
    note where it landed instead of writing the click onto the applicant's lead a second time."""
    sessions = MemorySessions()
    known = crm.provider.upsert_lead(
        Application.model_validate({"name": "Ali Veli", "email": "ali@example.com"}), uuid4()
    ).record_id
    if cut_short == "a held click's note":
        deliver(click_operation(session_started=True, channel="instagram"), crm.provider, sessions)
        click = click_operation(channel="whatsapp")  # creates the anonymous lead, then writes the held click
    else:
        deliver(click_operation(), crm.provider, sessions)  # the anonymous lead
        click = click_operation(channel="instagram")
    log_activity = crm.provider.log_activity

    def lands_then_fails(*args: object, **kwargs: object) -> object:
        log_activity(*args, **kwargs)  # type: ignore[arg-type]
        raise RetryableCrmError("Gateway Timeout", provider=crm.provider.name, status=504)

    monkeypatch.setattr(crm.provider, "log_activity", lands_then_fails)
    with pytest.raises(RetryableCrmError):
        deliver(click, crm.provider, sessions)
    monkeypatch.undo()
    anonymous = sessions.lead_for(crm.provider.name, SITE_SESSION)
    assert anonymous is not None
    assert anonymous != known

    assert apply(crm, sessions, application_operation()).record_id == known
    retried = deliver(click, crm.provider, sessions)

    assert retried.record_id == known, "the session follows the applicant"
    on_both = everything_on(crm, anonymous) + everything_on(crm, known)
    assert on_both.count("Instagram") == 1, "the click written once, where it landed"
    later = deliver(click_operation(channel="telegram", received_at=datetime.now(UTC)), crm.provider, sessions)
    assert later.record_id == known
    assert any("Telegram" in note for note in crm.sim.timeline(known)), "later clicks go to the applicant's lead"


def test_an_application_matching_someone_while_a_click_creates_the_session_lead_leaves_the_claim(
    crm: Crm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The applicant is known already (their lead is found without asking the session), while their
    first click is creating the session's anonymous lead (its create got no answer). The application
    writes the known lead but does not take the session from the click: it waits (is retried), so the
    click's retry finds the lead it made instead of writing itself onto the applicant's as well."""
    sessions = MemorySessions()
    known = crm.provider.upsert_lead(
        Application.model_validate({"name": "Ali Veli", "email": "ali@example.com"}), uuid4()
    ).record_id
    create = crm.provider.create_minimal_lead_from_activity

    def lands_then_times_out(*args: object, **kwargs: object) -> object:
        create(*args, **kwargs)  # type: ignore[arg-type]
        raise RetryableCrmError("Gateway Timeout", provider=crm.provider.name, status=504)

    monkeypatch.setattr(crm.provider, "create_minimal_lead_from_activity", lands_then_times_out)
    click = click_operation(channel="instagram")
    with pytest.raises(RetryableCrmError):
        deliver(click, crm.provider, sessions)
    monkeypatch.undo()
    application = UpsertLeadOperation(
        origin=Origin.APPLICATIONS_API,
        payload=Application.model_validate(
            {"name": "Ali Veli", "email": "ali@example.com", "session_id": SITE_SESSION}
        ),
    )

    with pytest.raises(SessionLeadInProgress):
        deliver(application, crm.provider, sessions)
    clicked = deliver(click, crm.provider, sessions)
    applied = deliver(application, crm.provider, sessions)
    later = deliver(click_operation(channel="telegram", received_at=datetime.now(UTC)), crm.provider, sessions)

    assert applied.record_id == known == later.record_id
    assert clicked.record_id != known, "the click's own anonymous lead"
    assert str(click.operation_id) in everything_on(crm, clicked.record_id)
    assert str(click.operation_id) not in everything_on(crm, known), "the click not written a second time"
