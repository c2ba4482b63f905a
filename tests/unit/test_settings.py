"""Configuration is validated once, and a bad one refuses to start with a message naming the setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from crm_bridge.errors import RefusedCrmError, SettingsError
from crm_bridge.settings import CrmProviderName, load_settings

WEBHOOK = "https://agency.bitrix24.test/rest/1/s3cr3tw3bh00kt0k3n/"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def test_espocrm_settings_are_typed() -> None:
    settings = load_settings(
        {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": "https://crm.example.test/", "ESPOCRM_API_KEY": "k" * 32}
    )
    assert settings.crm_provider is CrmProviderName.ESPOCRM
    assert settings.espocrm is not None
    assert settings.espocrm.api_base == "https://crm.example.test/api/v1"
    assert settings.espocrm.api_key.get() == "k" * 32
    assert settings.crm_timeout_seconds == 5.0
    assert settings.default_phone_region == "TR"


def test_a_missing_provider_is_named() -> None:
    with pytest.raises(SettingsError, match="CRM_PROVIDER: Input should be 'espocrm', 'bitrix24' or 'sandbox'"):
        load_settings({})


def test_every_missing_espocrm_setting_is_named() -> None:
    with pytest.raises(SettingsError) as exc:
        load_settings({"CRM_PROVIDER": "espocrm"})
    assert "ESPOCRM_URL is not set" in str(exc.value)
    assert "ESPOCRM_API_KEY or ESPOCRM_API_KEY_PARAM is not set" in str(exc.value)


def test_a_secret_given_twice_is_refused() -> None:
    with pytest.raises(SettingsError, match="ESPOCRM_API_KEY and ESPOCRM_API_KEY_PARAM are both set"):
        load_settings(
            {
                "CRM_PROVIDER": "espocrm",
                "ESPOCRM_URL": "https://crm.example.test",
                "ESPOCRM_API_KEY": "k" * 32,
                "ESPOCRM_API_KEY_PARAM": "/crm-bridge/espocrm-api-key",
            }
        )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ESPOCRM_URL", "crm.example.test", "ESPOCRM_URL: "),
        ("CRM_TIMEOUT_SECONDS", "0", "CRM_TIMEOUT_SECONDS: "),
        ("CRM_TIMEOUT_SECONDS", "soon", "CRM_TIMEOUT_SECONDS: "),
        ("DEFAULT_PHONE_REGION", "XX", "DEFAULT_PHONE_REGION: 'XX' is not a phone region"),
        ("CRM_FIELD_MAPPING_FILE", "/nonexistent/mapping.json", "CRM_FIELD_MAPPING_FILE: no file"),
    ],
)
def test_invalid_values_are_named(variable: str, value: str, message: str) -> None:
    env = {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": "https://crm.example.test", "ESPOCRM_API_KEY": "k" * 32}
    with pytest.raises(SettingsError, match=message):
        load_settings({**env, variable: value})


def test_a_malformed_webhook_is_refused_without_echoing_its_token() -> None:
    bad = "http://agency.bitrix24.test/s3cr3tw3bh00kt0k3n"
    with pytest.raises(SettingsError, match="BITRIX24_WEBHOOK_URL: must look like") as exc:
        load_settings({"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": bad})
    assert "s3cr3tw3bh00kt0k3n" not in str(exc.value)


def test_bitrix24_needs_its_webhook() -> None:
    with pytest.raises(SettingsError, match="BITRIX24_WEBHOOK_URL or BITRIX24_WEBHOOK_URL_PARAM is not set"):
        load_settings({"CRM_PROVIDER": "bitrix24"})
    assert load_settings({"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": WEBHOOK}).bitrix24 is not None


ESPOCRM = {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": "https://crm.example.test", "ESPOCRM_API_KEY": "k" * 32}


def test_a_shadow_crm_is_the_other_configured_crm_and_takes_the_copies_made_for_it() -> None:
    settings = load_settings({**ESPOCRM, "CRM_SHADOW_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": WEBHOOK})

    assert settings.crm_shadow_provider is CrmProviderName.BITRIX24
    assert settings.providers == (CrmProviderName.ESPOCRM, CrmProviderName.BITRIX24)
    assert settings.destination(CrmProviderName.BITRIX24) is CrmProviderName.BITRIX24
    assert settings.destination(CrmProviderName.ESPOCRM) is CrmProviderName.ESPOCRM
    assert settings.destination(None) is CrmProviderName.ESPOCRM


def test_without_a_shadow_every_copy_goes_to_the_primary() -> None:
    settings = load_settings({**ESPOCRM, "CRM_SHADOW_PROVIDER": "", "BITRIX24_WEBHOOK_URL": WEBHOOK})

    assert settings.crm_shadow_provider is None
    assert settings.providers == (CrmProviderName.ESPOCRM,)
    assert {settings.destination(name) for name in (None, *CrmProviderName)} == {CrmProviderName.ESPOCRM}


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {**ESPOCRM, "CRM_SHADOW_PROVIDER": "bitrix24"},
            "BITRIX24_WEBHOOK_URL or BITRIX24_WEBHOOK_URL_PARAM is not set (required when CRM_SHADOW_PROVIDER=bitrix24)",
        ),
        (
            {"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": WEBHOOK, "CRM_SHADOW_PROVIDER": "espocrm"},
            "ESPOCRM_URL is not set (required when CRM_SHADOW_PROVIDER=espocrm); "
            "ESPOCRM_API_KEY or ESPOCRM_API_KEY_PARAM is not set (required when CRM_SHADOW_PROVIDER=espocrm)",
        ),
        (
            {**ESPOCRM, "CRM_SHADOW_PROVIDER": "espocrm"},
            "CRM_SHADOW_PROVIDER must differ from CRM_PROVIDER (both are espocrm)",
        ),
        ({**ESPOCRM, "CRM_SHADOW_PROVIDER": "sandbox"}, "CRM_SHADOW_PROVIDER: must be espocrm or bitrix24"),
        ({**ESPOCRM, "CRM_SHADOW_PROVIDER": "salesforce"}, "CRM_SHADOW_PROVIDER: must be espocrm or bitrix24"),
    ],
)
def test_a_shadow_that_cannot_work_is_refused_naming_the_variable(environment: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_settings(environment)
    assert message in str(exc.value)
    assert "s3cr3tw3bh00kt0k3n" not in str(exc.value)


def test_the_settings_repr_never_shows_a_secret() -> None:
    settings = load_settings({"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": WEBHOOK})
    assert "s3cr3tw3bh00kt0k3n" not in repr(settings)
    assert "s3cr3tw3bh00kt0k3n" not in str(settings.model_dump())


@pytest.mark.usefixtures("aws")
def test_secrets_are_read_from_ssm_and_cached_until_refreshed() -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/crm-bridge/espocrm-api-key", Value="first-key-0001", Type="SecureString")
    settings = load_settings(
        {
            "CRM_PROVIDER": "espocrm",
            "ESPOCRM_URL": "https://crm.example.test",
            "ESPOCRM_API_KEY_PARAM": "/crm-bridge/espocrm-api-key",
        }
    )
    assert settings.espocrm is not None
    key = settings.espocrm.api_key
    assert key.get() == "first-key-0001"
    ssm.put_parameter(Name="/crm-bridge/espocrm-api-key", Value="rotated-key-002", Type="SecureString", Overwrite=True)
    assert key.get() == "first-key-0001", "cached between calls"
    key.refresh()
    assert key.get() == "rotated-key-002", "read afresh after the CRM rejected the old one"


@pytest.mark.usefixtures("aws")
def test_the_bitrix_webhook_can_live_in_secrets_manager() -> None:
    boto3.client("secretsmanager").create_secret(Name="crm-bridge/bitrix24-webhook", SecretString=WEBHOOK)
    settings = load_settings(
        {"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL_PARAM": "secretsmanager:crm-bridge/bitrix24-webhook"}
    )
    assert settings.bitrix24 is not None
    assert settings.bitrix24.webhook.get() == WEBHOOK


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("where", ["/crm-bridge/missing-api-key", "secretsmanager:crm-bridge/missing-api-key"])
def test_a_secret_that_cannot_be_read_is_a_refusal_to_retry_naming_no_secret(where: str) -> None:
    """Deleted, or the role may not read it: no request reached the CRM, so the operation is queued
    and retried (not a 500 that loses it), and the error says what failed without the store's text."""
    settings = load_settings(
        {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": "https://crm.example.test", "ESPOCRM_API_KEY_PARAM": where}
    )
    assert settings.espocrm is not None

    with pytest.raises(RefusedCrmError) as refused:
        settings.espocrm.api_key.get()

    assert refused.value.code == "credentials_unreadable"
    assert "missing-api-key" not in str(refused.value)


def test_the_mapping_file_setting_is_a_path(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.json"
    mapping.write_text("{}")
    env = {"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": WEBHOOK, "CRM_FIELD_MAPPING_FILE": str(mapping)}
    assert load_settings(env).field_mapping_file == mapping
