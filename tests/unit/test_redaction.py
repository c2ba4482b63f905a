"""Secrets and personal data never reach a log line, whoever logs them."""

from __future__ import annotations

import io
import logging

from crm_bridge.observability import get_logger, mask_email, mask_phone, redact, register_secret


def test_masks_keep_enough_to_correlate_and_no_more() -> None:
    assert mask_phone("+905321234567") == "+90********67"
    assert mask_email("jane.doe@example.com") == "j***@e***.com"


def test_free_text_loses_registered_secrets_webhook_tokens_and_contacts() -> None:
    register_secret("espo-key-abcdef123456")
    text = redact(
        "key espo-key-abcdef123456 url https://a.bitrix24.test/rest/7/tok3n/crm.lead.add.json "
        "from jane@example.com phone +90 532 123 45 67"
    )
    assert "espo-key-abcdef123456" not in text
    assert "tok3n" not in text
    assert "/rest/7/***/crm.lead.add.json" in text
    assert "jane@example.com" not in text
    assert "532 123 45 67" not in text


def test_the_logger_scrubs_messages_extras_and_tracebacks(log_output: io.StringIO) -> None:
    register_secret("espo-key-abcdef123456")
    logger = get_logger()
    try:
        raise RuntimeError("failed with key espo-key-abcdef123456")
    except RuntimeError:
        logger.exception("lead for jane@example.com", extra={"phone": "+905321234567", "key": "espo-key-abcdef123456"})
    output = log_output.getvalue()
    assert "lead for j***@e***.com" in output
    for leaked in ("jane@example.com", "+905321234567", "espo-key-abcdef123456"):
        assert leaked not in output


def test_third_party_loggers_are_scrubbed_and_quiet(log_output: io.StringIO) -> None:
    httpx_logger = logging.getLogger("httpx")
    httpx_logger.info("HTTP Request: POST https://a.bitrix24.test/rest/1/tok3n/crm.lead.add.json")
    httpx_logger.warning("retrying https://a.bitrix24.test/rest/1/tok3n/crm.lead.add.json")
    output = log_output.getvalue()
    assert "HTTP Request" not in output, "httpx logs every URL at INFO: kept at WARNING"
    assert "/rest/1/***/crm.lead.add.json" in output
    assert "tok3n" not in output
