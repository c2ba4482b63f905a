"""The simulator's migration role against the real EspoCRM 8.4.2's answers (fixtures 42-59)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.simulators.espocrm import SimulatedEspoCrm, fixture
from tests.unit.test_espocrm_simulator import assert_like_recording, replay


@pytest.fixture
def sim() -> Iterator[SimulatedEspoCrm]:
    """As recorded: provisioned for a move with EUR allowed and the plan's stages."""
    with SimulatedEspoCrm(migration_role=True) as simulated:
        simulated.moved.currencies.append("EUR")
        stage = simulated.moved.definitions["Opportunity"]["stage"]
        stage["options"] += ["Visa", "Enrolled"]
        stage["probabilityMap"] |= {"Visa": 60, "Enrolled": 100}
        yield simulated


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as http:
        yield http


def test_created_at_and_created_by_of_an_api_user_are_ignored_as_in_42(
    sim: SimulatedEspoCrm, client: httpx.Client
) -> None:
    sent = fixture("42_create_account_created_at_ignored")["request"]["body"]

    body = assert_like_recording(
        replay(sim, client, "42_create_account_created_at_ignored"),
        "42_create_account_created_at_ignored",
        same_keys=False,
    )

    assert body["createdAt"] != sent["createdAt"]
    assert body["createdById"] != sent["createdById"]
    assert body["cSourceRecord"] == sent["cSourceRecord"]


@pytest.mark.parametrize("name", ["48_invalid_currency_not_listed", "49_create_opportunity_close_date_required"])
def test_validation_failures_answer_as_recorded(sim: SimulatedEspoCrm, client: httpx.Client, name: str) -> None:
    body = assert_like_recording(replay(sim, client, name), name)

    assert body == fixture(name)["response"]["body"]


def test_an_opportunity_takes_its_stage_probability_as_in_50(sim: SimulatedEspoCrm, client: httpx.Client) -> None:
    body = assert_like_recording(replay(sim, client, "50_create_opportunity"), "50_create_opportunity", same_keys=False)

    assert body["probability"] == fixture("50_create_opportunity")["response"]["body"]["probability"] == 60


def test_an_attachment_is_created_as_in_44_and_read_back_as_bytes(sim: SimulatedEspoCrm, client: httpx.Client) -> None:
    body = assert_like_recording(replay(sim, client, "44_create_attachment"), "44_create_attachment")
    sent = fixture("44_create_attachment")["request"]["body"]["file"]

    read = client.get(f"{sim.base_url}/api/v1/Attachment/file/{body['id']}", headers={"X-Api-Key": sim.api_key})

    assert read.content == base64.b64decode(sent.split(",", 1)[1])
    assert read.content.decode() == fixture("45_read_attachment_file")["response"]["body_raw"]


def test_only_active_users_are_listed_as_in_58(sim: SimulatedEspoCrm, client: httpx.Client) -> None:
    sim.seed_user("anna.sales", "Anna Sales", "anna@agency.example")
    sim.seed_user("oleg.left", "Oleg Left", "oleg@agency.example", active=False)

    body = assert_like_recording(replay(sim, client, "58_api_user_list"), "58_api_user_list")

    assert [user["userName"] for user in body["list"]] == ["admin", "anna.sales"]


def test_the_role_table_is_answered_as_in_59(sim: SimulatedEspoCrm, client: httpx.Client) -> None:
    body = assert_like_recording(replay(sim, client, "59_api_app_user"), "59_api_app_user")

    assert body["acl"] == fixture("59_api_app_user")["response"]["body"]["acl"]
