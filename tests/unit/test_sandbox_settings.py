"""The sandbox is a CRM for local runs only: it needs a file, says what it is, and is not in the layer."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from crm_bridge.errors import SettingsError
from crm_bridge.field_mapping import MappedField, SandboxMapping, load_field_mapping
from crm_bridge.providers import build_provider, factory
from crm_bridge.settings import CrmProviderName, load_settings
from infra.local.sandbox import SandboxProvider


def test_the_sandbox_is_refused_without_a_file() -> None:
    with pytest.raises(SettingsError, match="SANDBOX_DB_PATH is not set"):
        load_settings({"CRM_PROVIDER": "sandbox"})


def test_with_a_file_it_is_a_provider_like_the_others(tmp_path: Path, log_output: io.StringIO) -> None:
    settings = load_settings({"CRM_PROVIDER": "sandbox", "SANDBOX_DB_PATH": str(tmp_path / "crm.sqlite3")})

    provider = build_provider(settings, load_field_mapping())

    assert settings.crm_provider is CrmProviderName.SANDBOX
    assert isinstance(provider, SandboxProvider)
    assert (tmp_path / "crm.sqlite3").is_file()
    assert "leads are kept in a local SQLite file, not sent to any CRM" in log_output.getvalue()


def test_without_the_local_runner_the_layer_refuses_the_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a deployed function: the layer alone has no sandbox, even with settings that select it."""
    monkeypatch.setattr(factory, "_REGISTERED", {})
    settings = load_settings({"CRM_PROVIDER": "sandbox", "SANDBOX_DB_PATH": str(tmp_path / "crm.sqlite3")})

    with pytest.raises(SettingsError, match=r"CRM_PROVIDER=sandbox is not available here \(it exists in local runs"):
        build_provider(settings, load_field_mapping())
    assert not (tmp_path / "crm.sqlite3").exists()


def test_the_default_mapping_maps_every_domain_field_for_the_sandbox() -> None:
    assert set(load_field_mapping().sandbox.lead_fields) == set(MappedField)


def test_a_sandbox_attribute_cannot_shadow_a_native_one() -> None:
    with pytest.raises(ValueError, match="not a sandbox custom attribute name"):
        SandboxMapping.model_validate({"lead_fields": {"referral_code": "phones"}})
