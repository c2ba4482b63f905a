"""Normalisation of what visitors type, with the libraries made for it.

Every function raises ``ValueError`` with a message meant for the person who sent the value;
the models (``crm_bridge.models.fields``) turn it into a validation error that names the field.
Plain Python on purpose: the redirect applies the same rules without loading pydantic, whose
import would double its cold start (docs/performance.md).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping

MAX_PHONE_INPUT_LENGTH = 40
MAX_EMAIL_LENGTH = 254
REFERRAL_CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Click ids (gclid, fbclid) are URL-safe base64-like tokens.
CLICK_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-.~]{1,512}")
# A deliberately plain check: one @, no spaces, a dotted domain. Deliverability is the CRM's job.
EMAIL_PATTERN = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,63}")
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")
PAGE_URL_PATTERN = re.compile(r"(https?://|/)[!-~]*")
"""Visible ASCII, as browsers send a location (anything else percent-encoded): nothing invisible."""
MAX_PAGE_URL_LENGTH = 2048
MAX_TAG_INPUT_LENGTH = 4096
"""Longest attribution tag read at all, before cleaning (the models' ``str_max_length``)."""
MEDIUM_TEXT_LENGTH = 255
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Marks, embeddings, overrides and isolates: they reorder what a reader sees ("Trojan Source")."""
_INVISIBLE_FORMATTING = _BIDI_CONTROLS | {"\u200b", "\ufeff"}


def _hidden(char: str) -> bool:
    """A control character (C0, DEL, C1), a bidi control, a zero-width space or BOM, or a Unicode
    noncharacter (SQS refuses a message holding U+FFFE or U+FFFF). Joiners stay: emoji need them."""
    code = ord(char)
    return (
        code < 32
        or 127 <= code < 160
        or char in _INVISIBLE_FORMATTING
        or 0xFDD0 <= code <= 0xFDEF
        or code & 0xFFFE == 0xFFFE
    )


def clean_text(value: str, *, multiline: bool = False) -> str | None:
    """NFC-normalise, drop invisible characters (controls, bidi controls, noncharacters), trim;
    empty becomes None."""
    text = unicodedata.normalize("NFC", value)
    text = "".join(ch for ch in text if ch in "\n\t" or not _hidden(ch))
    if not multiline:
        text = " ".join(text.split())
    else:
        text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n"))
    text = text.strip()
    return text or None


def normalize_phone(value: str) -> str:
    """Any human phone format -> E.164 (``+905321234567``), or ValueError."""
    raw = value.strip()
    if len(raw) > MAX_PHONE_INPUT_LENGTH:
        raise ValueError(f"phone number is longer than {MAX_PHONE_INPUT_LENGTH} characters")
    from crm_bridge.settings import default_phone_region

    region = default_phone_region()
    import phonenumbers  # on first use: functions that never see a phone number never load it

    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(
            f"not a valid phone number (numbers without a country code are read as {region}; "
            "write it in international format, e.g. +90 532 123 45 67)"
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(value: str) -> str:
    """Trim and lower-case an e-mail address, or ValueError."""
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValueError(f"e-mail address is longer than {MAX_EMAIL_LENGTH} characters")
    if not EMAIL_PATTERN.fullmatch(email):
        raise ValueError("not a valid e-mail address")
    if any(unicodedata.category(char).startswith("C") for char in email):
        raise ValueError("the e-mail address holds invisible characters")
    return email


def normalize_referral_code(value: str) -> str:
    code = value.strip()
    if not REFERRAL_CODE_PATTERN.fullmatch(code):
        raise ValueError("referral code must be 1-64 letters, digits, '-' or '_', starting with a letter or digit")
    return code


def normalize_click_id(value: str) -> str:
    click_id = value.strip()
    if not CLICK_ID_PATTERN.fullmatch(click_id):
        raise ValueError("click id must be 1-512 URL-safe characters")
    return click_id


def bounded_text(value: str, max_length: int, *, multiline: bool = False) -> str | None:
    """Cleaned text (:func:`clean_text`) of at most ``max_length`` characters, or ValueError."""
    text = clean_text(value, multiline=multiline)
    if text is not None and len(text) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    return text


def medium_text(value: str) -> str | None:
    return bounded_text(value, MEDIUM_TEXT_LENGTH)


ATTRIBUTION_RULES: dict[str, Callable[[str], str | None]] = {
    "referral_code": normalize_referral_code,
    "utm_source": medium_text,
    "utm_medium": medium_text,
    "utm_campaign": medium_text,
    "utm_term": medium_text,
    "utm_content": medium_text,
    "utm_id": medium_text,
    "gclid": normalize_click_id,
    "fbclid": normalize_click_id,
}
"""Each attribution tag and its rule, in the order of the ``Attribution`` model's fields (a test
keeps the two in step)."""


def valid_attribution_tags(values: Mapping[str, str | None]) -> dict[str, str]:
    """Every tag that is valid on its own, normalised; the others are dropped, not refused (a
    partner's link must work whatever it carries)."""
    kept: dict[str, str] = {}
    for name, rule in ATTRIBUTION_RULES.items():
        value = values.get(name)
        if not value or not value.strip() or len(value) > MAX_TAG_INPUT_LENGTH:
            continue
        try:
            normalized = rule(value)
        except ValueError:
            continue
        if normalized is not None:
            kept[name] = normalized
    return kept


def page_location(value: str) -> str | None:
    """A page's location as the models accept it (trimmed, visible ASCII, bounded), or None."""
    location = value.strip()
    if len(location) > MAX_PAGE_URL_LENGTH or not PAGE_URL_PATTERN.fullmatch(location):
        return None
    return location
