"""Test-wide guards: no real network, no real AWS, no state leaking between tests.

Sockets are disabled by pytest-socket (see pyproject's addopts) except to loopback; HTTP to the
CRMs goes through respx simulators whose ``assert_all_mocked`` turns an unexpected URL into a failure.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from crm_bridge import settings as settings_module
from crm_bridge.observability import get_logger
from crm_bridge.providers import factory

pytest_plugins = ["tests.real_crm.fixtures"]

_CONFIG_VARIABLES = (
    "CRM_PROVIDER",
    "CRM_SHADOW_PROVIDER",
    "CRM_TIMEOUT_SECONDS",
    "CRM_FIELD_MAPPING_FILE",
    "DEFAULT_PHONE_REGION",
    "ESPOCRM_URL",
    "ESPOCRM_API_KEY",
    "ESPOCRM_API_KEY_PARAM",
    "ESPOCRM_HMAC_SECRET",
    "ESPOCRM_HMAC_SECRET_PARAM",
    "BITRIX24_WEBHOOK_URL",
    "BITRIX24_WEBHOOK_URL_PARAM",
)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from an environment with no CRM configuration and fake AWS credentials."""
    for name in _CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("POWERTOOLS_DEV", "false")
    _clear_caches()
    yield
    _clear_caches()


def _clear_caches() -> None:
    settings_module.get_settings.cache_clear()
    settings_module.default_phone_region.cache_clear()
    factory.get_provider.cache_clear()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything the service logger (and the third-party loggers it configures) writes."""
    handler = get_logger().registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)
