"""What a local run is configured with, and where each setting goes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.local.config import (
    LOCAL_DEFAULTS,
    RUNNER_SETTINGS,
    ConfigError,
    LocalConfig,
    Placement,
    choose_crm,
    function_settings,
    known_settings,
    load_config,
    place_settings,
    read_env_file,
)
from infra.local.template import Template, load_template

ROOT = Path(__file__).parents[2]
_READS = (
    re.compile(r"""(?:env|environ)(?:\.get\(|\[)"([A-Z][A-Z0-9_]+)\""""),
    re.compile(r'''_secret\(env, "([A-Z][A-Z0-9_]+)"'''),
    re.compile(r'''"(RETRY_[A-Z_]+)"'''),
)


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def test_env_files_are_read_as_people_write_them(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# a comment\n\nexport CRM_PROVIDER=espocrm\nESPOCRM_URL = https://crm.example.test  # trailing\n"
        'REDIRECT_WHATSAPP_REF_SUFFIX=" My code: {ref}"\nEMPTY=\n',
        encoding="utf-8",
    )

    assert read_env_file(env_file) == {
        "CRM_PROVIDER": "espocrm",
        "ESPOCRM_URL": "https://crm.example.test",
        "REDIRECT_WHATSAPP_REF_SUFFIX": " My code: {ref}",
        "EMPTY": "",
    }
    (tmp_path / "bad.env").write_text("just words\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1"):
        read_env_file(tmp_path / "bad.env")


def test_env_example_documents_every_setting_the_project_reads(template: Template) -> None:
    sources = [*(ROOT / "layers/shared/crm_bridge").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    read: set[str] = set()
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for pattern in _READS:
            read |= set(pattern.findall(text))
    read |= {f"{name}_PARAM" for name in ("ESPOCRM_API_KEY", "ESPOCRM_HMAC_SECRET", "BITRIX24_WEBHOOK_URL")}
    read |= set(template.variables()) | set(RUNNER_SETTINGS)
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))

    assert read - documented == set()
    assert "RETRY_FIRST_DELAY_SECONDS" in read, "the scan finds the worker's settings"


def test_defaults_then_the_file_then_the_environment_for_known_settings_only(
    tmp_path: Path, template: Template
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("REDIRECT_TELEGRAM_URL=https://t.me/from_file\nSITE_ORIGINS=https://file.example\n")
    environ = {"SITE_ORIGINS": "https://shell.example", "AWS_SECRET_ACCESS_KEY": "real", "HOME": "/root"}

    config = load_config(env_file, known_settings(template), environ)

    assert config.values["REDIRECT_TELEGRAM_URL"] == "https://t.me/from_file"
    assert config.values["SITE_ORIGINS"] == "https://shell.example"
    assert config.values["REDIRECT_INSTAGRAM_URL"] == LOCAL_DEFAULTS["REDIRECT_INSTAGRAM_URL"]
    assert "AWS_SECRET_ACCESS_KEY" not in config.values
    assert config.port == 3000


def test_without_a_crm_the_sandbox_is_chosen_and_says_so(tmp_path: Path) -> None:
    crm = choose_crm(LocalConfig({}, {}), tmp_path)

    assert crm.is_sandbox
    assert crm.settings["SANDBOX_DB_PATH"] == str((tmp_path / "sandbox.sqlite3").resolve())
    assert "SANDBOX, not a real CRM" in crm.describe()


def test_a_configured_crm_is_validated_by_the_layers_own_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ESPOCRM_API_KEY or ESPOCRM_API_KEY_PARAM is not set"):
        choose_crm(LocalConfig({"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": "http://127.0.0.1:9"}, {}), tmp_path)
    with pytest.raises(ConfigError, match="set ESPOCRM_API_KEY itself"):
        choose_crm(LocalConfig({"CRM_PROVIDER": "espocrm", "ESPOCRM_API_KEY_PARAM": "/x"}, {}), tmp_path)

    crm = choose_crm(
        LocalConfig({"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": "http://127.0.0.1:9", "ESPOCRM_API_KEY": "k" * 20}, {}),
        tmp_path,
    )
    assert crm.secrets == {"ESPOCRM_API_KEY": "k" * 20}
    assert "ESPOCRM_API_KEY" not in crm.settings
    assert "k" * 20 not in crm.describe()


def test_each_setting_goes_where_the_template_passes_it(tmp_path: Path, template: Template) -> None:
    parameter_of = template.parameter_for_variable()
    config = LocalConfig(
        {
            "REDIRECT_TELEGRAM_URL": "https://t.me/local",
            "RETRY_MAX_RECEIVES": "3",
            "SITE_ORIGINS": "https://site.example",
            "CRM_QUEUE_URL": "https://sqs.example/elsewhere",
            "RETRY_FIRST_DELAY_SECONDS": "1",
            "CRM_PROVIDER": "espocrm",
            "ESPOCRM_URL": "http://127.0.0.1:9",
            "ESPOCRM_API_KEY": "k" * 20,
        },
        {},
    )

    placement = place_settings(config, template)
    crm = choose_crm(config, tmp_path)

    assert placement.parameters == {
        parameter_of["REDIRECT_TELEGRAM_URL"]: "https://t.me/local",
        parameter_of["RETRY_MAX_RECEIVES"]: "3",
    }
    assert placement.overrides == {"SITE_ORIGINS": "https://site.example"}
    assert placement.wired == ["CRM_QUEUE_URL"]
    assert placement.ignored == ["RETRY_FIRST_DELAY_SECONDS"]
    # The key's parameter is the stack's: its functions' variable and its read policy follow from it.
    assert crm.stack_parameters() == {"EspoCrmApiKeyName": "/crm-bridge/local/espocrm-api-key"}
    deployed = {
        "CRM_PROVIDER": "espocrm",
        "SITE_ORIGINS": "",
        "ESPOCRM_API_KEY_PARAM": "/crm-bridge/local/espocrm-api-key",
        "CRM_QUEUE_URL": "q",
    }
    environment = function_settings(deployed, placement, crm)
    assert environment["SITE_ORIGINS"] == "https://site.example"
    assert environment["ESPOCRM_URL"] == "http://127.0.0.1:9"
    assert environment["ESPOCRM_API_KEY_PARAM"] == "/crm-bridge/local/espocrm-api-key"
    assert "ESPOCRM_API_KEY" not in environment
    assert environment["CRM_QUEUE_URL"] == "q"


def test_a_shadow_crm_reaches_the_functions_like_the_primary_and_is_validated_the_same_way(
    tmp_path: Path, template: Template
) -> None:
    espocrm = {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": "http://127.0.0.1:9", "ESPOCRM_API_KEY": "k" * 20}
    with pytest.raises(ConfigError, match=r"required when CRM_SHADOW_PROVIDER=bitrix24"):
        choose_crm(LocalConfig({**espocrm, "CRM_SHADOW_PROVIDER": "bitrix24"}, {}), tmp_path)
    config = LocalConfig(
        {**espocrm, "CRM_SHADOW_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": "https://b24.example/rest/1/t0k3n/"},
        {},
    )

    crm = choose_crm(config, tmp_path)
    placement = place_settings(config, template)

    assert placement.parameters == {}
    assert "t0k3n" not in crm.describe()
    assert "every operation also queued for the shadow, Bitrix24 portal b24.example" in crm.describe()
    deployed = {"CRM_PROVIDER": "espocrm", "CRM_SHADOW_PROVIDER": ""}
    assert function_settings(deployed, placement, crm)["CRM_SHADOW_PROVIDER"] == "bitrix24"


def test_without_a_shadow_the_functions_get_none(tmp_path: Path) -> None:
    crm = choose_crm(LocalConfig({}, {}), tmp_path)
    environment = function_settings({"CRM_PROVIDER": "espocrm", "CRM_SHADOW_PROVIDER": ""}, Placement(), crm)

    assert environment["CRM_SHADOW_PROVIDER"] == ""
    assert "dual-write" not in crm.describe()
