"""The contract against a real EspoCRM: set ESPOCRM_URL and ESPOCRM_API_KEY to run it.

    ESPOCRM_URL=https://crm.example.com ESPOCRM_API_KEY=... .venv/bin/pytest -m live tests/contract

It writes leads with unique names and contacts and never deletes (the API role need not allow it).
The API user needs Lead create/read/edit/stream; custom fields are optional (a missing one is
reported in ``ignored_fields`` and by the health check, not a failure here).
"""

from __future__ import annotations

import os
from uuid import uuid4

import pytest

from crm_bridge.errors import CrmConfigurationError, PermanentCrmError
from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.models import Application, MessengerActivity
from crm_bridge.providers import CrmProvider, LeadAction, build_provider
from crm_bridge.settings import load_settings

# Read at import: the test-wide fixture clears CRM variables from the environment of each test.
LIVE_URL = os.environ.get("ESPOCRM_URL")
LIVE_KEY = os.environ.get("ESPOCRM_API_KEY")

pytestmark = [
    pytest.mark.live,
    pytest.mark.enable_socket,
    pytest.mark.skipif(not (LIVE_URL and LIVE_KEY), reason="set ESPOCRM_URL and ESPOCRM_API_KEY to run"),
]


def live_provider(api_key: str | None = LIVE_KEY) -> CrmProvider:
    settings = load_settings(
        {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": LIVE_URL or "", "ESPOCRM_API_KEY": api_key or ""}
    )
    return build_provider(settings, load_field_mapping())


@pytest.fixture
def provider() -> CrmProvider:
    return live_provider()


def unique_application(tag: str, **overrides: object) -> Application:
    data: dict[str, object] = {
        "first_name": "Live",
        "last_name": f"Contract {tag}",
        "email": f"live.contract.{tag}@example.com",
        "phone": f"+1 202 555 {int(tag[:4], 16) % 10000:04d}",
        "message": "crm-bridge live contract test",
    }
    data.update(overrides)
    return Application.model_validate(data)


def test_create_then_repeat_updates_and_notes(provider: CrmProvider) -> None:
    tag = uuid4().hex[:8]
    created = provider.upsert_lead(unique_application(tag, program=None), uuid4())
    assert created.action is LeadAction.CREATED
    repeat = provider.upsert_lead(unique_application(tag, program="Medicine"), uuid4())
    assert repeat.record_id == created.record_id
    assert repeat.action in (LeadAction.UPDATED, LeadAction.UNCHANGED)
    assert repeat.activity_id


def test_minimal_lead_and_activity(provider: CrmProvider) -> None:
    activity = MessengerActivity.model_validate({"channel": "telegram", "session_id": f"live-{uuid4().hex[:12]}"})
    minimal = provider.create_minimal_lead_from_activity(activity, uuid4())
    assert minimal.action is LeadAction.CREATED
    logged = provider.log_activity(minimal.record_id, activity)
    assert logged.activity_id


def test_validation_error_is_permanent(provider: CrmProvider) -> None:
    lead_id = provider.upsert_lead(unique_application(uuid4().hex[:8]), uuid4()).record_id
    with pytest.raises(PermanentCrmError) as exc:
        provider._update(lead_id, {"status": "Not A Status"})  # a value EspoCRM's enum check refuses
    assert exc.value.field == "status"


def test_wrong_key_is_a_configuration_error() -> None:
    with pytest.raises(CrmConfigurationError):
        live_provider("wrong-key-" + uuid4().hex).upsert_lead(unique_application(uuid4().hex[:8]), uuid4())


def test_health_check(provider: CrmProvider) -> None:
    report = provider.test_connection()
    assert report.reachable
    assert report.error_kind is None
