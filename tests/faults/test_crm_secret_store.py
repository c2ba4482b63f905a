"""The CRM's key where the stack says it lives (Secrets Manager, ``CrmSecretStore=secretsmanager``): each
function reads it with its own role, whose policy names that secret and no other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.espocrm.local import free_port
from tests.e2e.stub_crm import StubEspoCrm
from tests.faults.system import System, running_system

API_KEY = "secret-store-espo-key-5c2e81"
SECRET = "crm-bridge/faults/espocrm-api-key"
APPLICATION = {"name": "Deniz Aydın", "phone": "+90 535 222 33 44", "consent": True}
CLICK = {"channel": "whatsapp", "session_id": "secret-store-session-01", "page": "/"}


@pytest.fixture
def crm() -> Iterator[StubEspoCrm]:
    stub = StubEspoCrm(free_port(), API_KEY)
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture
def system(crm: StubEspoCrm) -> Iterator[System]:
    """No key in the environment: the deployed functions' ``ESPOCRM_API_KEY_PARAM`` names the secret."""
    with (
        pytest.MonkeyPatch.context() as env,
        running_system(
            env,
            {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": crm.base_url},
            seed=3,
            parameters={"CrmSecretStore": "secretsmanager", "EspoCrmApiKeyName": SECRET},
            secrets={f"secretsmanager:{SECRET}": API_KEY},
        ) as running,
    ):
        yield running


def test_the_functions_read_the_crm_key_from_secrets_manager(system: System, crm: StubEspoCrm) -> None:
    applied = system.submit_application(APPLICATION)
    clicked = system.click(CLICK)
    system.work()

    assert applied.status == 201, applied.body
    assert clicked.status == 202, clicked.body
    assert {lead["phoneNumber"] for lead in crm.sim.leads()} >= {"+905352223344"}
    assert len(crm.sim.leads()) == 2, "the application's lead and the click's"
