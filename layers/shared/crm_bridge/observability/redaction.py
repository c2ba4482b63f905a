"""Keep secrets and personal data out of logs, exception texts, metrics and responses.

Two mechanisms that complement each other:

* code that logs personal data masks it explicitly (``mask_phone``, ``mask_email``, ``mask_name``);
* the log formatter passes every finished line through :func:`redact`: registered secret values,
  Bitrix webhook tokens in URLs, and anything shaped like an e-mail address or an international
  phone number are scrubbed whatever logged them.
"""

from __future__ import annotations

import re
import threading

_REDACTED = "***"
_secrets: set[str] = set()
_lock = threading.Lock()

# https://portal.bitrix24.com/rest/1/abc123token/crm.lead.add.json -> /rest/1/***/crm.lead.add.json
_BITRIX_TOKEN = re.compile(r"(/rest/\d+/)[^/\s\"']+")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+\d[\d \-().]{6,18}\d")


def register_secret(value: str | None) -> None:
    """Remember a secret value so that any log line containing it is redacted."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Remove registered secrets, webhook tokens and personal data from free text."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    text = _BITRIX_TOKEN.sub(rf"\1{_REDACTED}", text)
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def mask_phone(phone: str) -> str:
    """``+905321234567`` -> ``+90*******67``: enough to correlate, not enough to call."""
    if not phone:
        return phone
    digits = [c for c in phone if c.isdigit()]
    if len(digits) < 6:
        return _REDACTED
    return f"+{''.join(digits[:2])}{'*' * (len(digits) - 4)}{''.join(digits[-2:])}"


def mask_email(email: str) -> str:
    """``jane.doe@example.com`` -> ``j***@e***.com``."""
    if not email:
        return email
    local, _, domain = email.partition("@")
    host, _, tld = domain.rpartition(".")
    return f"{local[:1]}{_REDACTED}@{host[:1]}{_REDACTED}.{tld}"


def mask_name(name: str) -> str:
    if not name:
        return name
    return f"{name[:1]}{_REDACTED}"
