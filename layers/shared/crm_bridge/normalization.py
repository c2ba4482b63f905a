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
from functools import cache
from typing import NamedTuple

MAX_PHONE_INPUT_LENGTH = 40
MAX_EMAIL_LENGTH = 254
"""Longest address accepted (RFC 5321's path limit): under EspoCRM's 255 (``EmailAddress.name``
maxLength) and PHP's limit of 254 characters outside quotes."""
MAX_EMAIL_LOCAL_LENGTH = 64
REFERRAL_CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Ad click ids (Google's gclid/gbraid/wbraid, Meta's fbclid and WhatsApp click-to-chat's ctwa_clid,
# TikTok's ttclid, Microsoft's msclkid, Yandex's yclid) are URL-safe tokens.
CLICK_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-.~]{1,512}")
CONSENT_VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
"""The privacy notice's version as the site names it, e.g. ``kvkk-2026-03`` or ``v4.1``."""
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
    empty becomes None. ValueError for a lone surrogate (half of a UTF-16 pair, as a ``\\ud800``
    escape in an event's JSON carries it): it is not text, the models refuse it and the worker
    cannot read an operation holding it, so the redirect drops such a tag rather than queue it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("holds a broken character (half of a UTF-16 surrogate pair)") from None
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
    """Trim and lower-case an e-mail address, write an internationalised domain in its ASCII form
    (IDNA), and keep it only if the CRM will: EspoCRM stores an address only when PHP's
    ``filter_var(FILTER_VALIDATE_EMAIL)`` accepts it (:func:`php_validates_email`), and refuses the
    whole lead otherwise. Raises ValueError with what the visitor can fix."""
    email = value.strip()
    if any(unicodedata.category(char).startswith("C") for char in email):
        raise ValueError("the e-mail address holds invisible characters")
    local, at, domain = email.rpartition("@")
    if not (local and at and domain):
        raise ValueError("not an e-mail address: it needs a name, an @ and a domain, like name@example.com")
    email = f"{local.lower()}@{_ascii_domain(domain)}"
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValueError(f"e-mail address is longer than {MAX_EMAIL_LENGTH} characters")
    if not php_validates_email(email):
        raise ValueError(_email_problem(local))
    return email


def _ascii_domain(domain: str) -> str:
    """The domain as mail servers (and PHP's rule) read it: lower case, an internationalised name in
    punycode (``bücher.de`` -> ``xn--bcher-kva.de``) by IDNA 2008 with UTS 46 mapping, as browsers
    do. Python's own ``idna`` codec is IDNA 2003, which turns ``straße.de`` into another domain."""
    if domain.isascii():
        return domain.lower()
    import idna  # on first use: its tables are only needed for the rare non-ASCII domain

    try:
        return str(idna.encode(domain, uts46=True, std3_rules=True, transitional=False).decode("ascii"))
    except UnicodeError:  # idna.IDNAError and its kin
        raise ValueError("the domain after the @ is not a valid domain name: check it for typing mistakes") from None


def _email_problem(local: str) -> str:
    """Why an address was refused, in the visitor's terms (the decision is PHP's rule's alone)."""
    if not local.isascii():
        return (
            "the part before the @ may only use Latin letters (a-z), digits and . _ - + characters: "
            "letters such as ş, ü or я cannot be used there"
        )
    quoted = local.startswith('"') and local.endswith('"')
    if not quoted and (local.startswith(".") or local.endswith(".") or ".." in local):
        return "the part before the @ cannot start or end with a dot, or have two dots in a row"
    if len(local) > MAX_EMAIL_LOCAL_LENGTH:
        return f"the part before the @ is longer than {MAX_EMAIL_LOCAL_LENGTH} characters"
    if not quoted and not _EMAIL_ATOMS.fullmatch(local):
        return "the part before the @ holds a character e-mail addresses cannot have (such as a space or a comma)"
    return "not a valid e-mail address: check the domain after the @ (like example.com)"


_EMAIL_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


# --- PHP's FILTER_VALIDATE_EMAIL -------------------------------------------------------------------
#
# EspoCRM 8.4.2 (Classes/FieldValidators/EmailType::checkEmailAddress) keeps an address only if
# ``filter_var($address, FILTER_VALIDATE_EMAIL)`` accepts it: php-src ext/filter/logical_filters.c,
# php_filter_validate_email without FILTER_FLAG_EMAIL_UNICODE, which is a limit of 320 bytes and
# one PCRE (``regexp1``, flags ``iD``, no ``u``: matched on the UTF-8 bytes). Ported here with the
# same language, in time linear in the input (Python's ``re`` has no backtracking limit to save it):
# * the classes hold ASCII only, so any byte >= 0x80 fails;
# * its two leading look-aheads, at most 254 "units" in all and at most 64 before an @ (a unit is a
#   character or an escape pair, either with an optional quote on each side), are counted by
#   :func:`_php_units` in one pass instead of by backtracking through every way of attaching quotes;
# * that backtracking is also why PHP refuses some addresses its regex matches: every quote can
#   belong to the unit before or after it, PCRE tries every combination and gives up (and
#   filter_var answers false) at ``pcre.backtrack_limit``. With PHP 8.2.36 and PCRE2 10.42, at the
#   default limit of 1,000,000, that happens from about 125,000 partial splits (``"a".`` seven
#   times before ``b@example.com`` is enough); we refuse from a fifth of that, so that another
#   PCRE build's count stays on the safe side. Only addresses with many quoted parts come near;
# * the domain's ``(((?:xn--)?LABEL\.){1,126}){1,}`` is ``(LABEL\.)+`` (a count of 1..126, repeated,
#   is any count, and ``xn--`` is already a LABEL), the top label's ``xn--`` branch is already
#   matched by ``[a-z][a-z0-9]*(-+[a-z0-9]+)*``, and ``$`` under ``D`` is ``\Z``.
# tests/unit/test_email_rule.py holds addresses checked against a real EspoCRM 8.4.2, and compares
# this port with PHP's own filter_var where a ``php`` binary is at hand.

_PHP_EMAIL_MAX_BYTES = 320
_PHP_EMAIL_MAX_UNITS = 254
_PHP_EMAIL_MAX_LOCAL_UNITS = 64
PHP_EMAIL_MAX_SPLITS = 25_000
"""Partial splits into units (:func:`_php_units`) above which PCRE may give up: PHP refuses then."""
_PHP_IPV4 = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}"
_PHP_EMAIL_BODY = (
    # the local part: atoms or quoted strings, joined by dots
    r"(?:[\x21\x23-\x27\x2A\x2B\x2D\x2F-\x39\x3D\x3F\x5E-\x7E]+"
    r"|\x22(?:[\x01-\x08\x0B\x0C\x0E-\x1F\x21\x23-\x5B\x5D-\x7F]|\x5C[\x00-\x7F])*\x22)"
    r"(?:\.(?:[\x21\x23-\x27\x2A\x2B\x2D\x2F-\x39\x3D\x3F\x5E-\x7E]+"
    r"|\x22(?:[\x01-\x08\x0B\x0C\x0E-\x1F\x21\x23-\x5B\x5D-\x7F]|\x5C[\x00-\x7F])*\x22))*"
    r"@"
    # a host name: labels of at most 63, the top one starting with a letter
    r"(?:(?!.*[^.]{64,})(?:[a-z0-9]+(?:-+[a-z0-9]+)*\.)+[a-z][a-z0-9]*(?:-+[a-z0-9]+)*"
    # or an address literal: [IPv6:...], or [IPv4] possibly after an IPv6 prefix
    r"|\[(?:IPv6:(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){7}"
    r"|(?!(?:.*[a-f0-9][:\]]){7,})(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){0,5})?::(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){0,5})?)"
    r"|(?:IPv6:(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){5}:"
    r"|(?!(?:.*[a-f0-9]:){5,})(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){0,3})?::(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){0,3}:)?))?"
    rf"{_PHP_IPV4})\])"
    r"\Z"
)


@cache
def _php_email_pattern() -> re.Pattern[str]:
    """Compiled on first use: the redirect imports this module and never checks an address."""
    return re.compile(_PHP_EMAIL_BODY, re.IGNORECASE)


def php_validates_email(address: str) -> bool:
    """Whether PHP's ``filter_var($address, FILTER_VALIDATE_EMAIL)`` accepts ``address`` (sent as
    UTF-8, as EspoCRM receives it). A port of its rule, in linear time whatever the input."""
    data = address.encode("utf-8", "surrogatepass")
    if len(data) > _PHP_EMAIL_MAX_BYTES or not data.isascii():
        return False
    units = _php_units(address)
    if (
        units.total > _PHP_EMAIL_MAX_UNITS
        or units.before_at > _PHP_EMAIL_MAX_LOCAL_UNITS
        or units.splits > PHP_EMAIL_MAX_SPLITS
    ):
        return False
    return _php_email_pattern().match(address) is not None


class _Units(NamedTuple):
    total: int
    """The most units any prefix splits into: PHP's ``(?!UNIT{255,})`` fails from 255."""
    before_at: int
    """The most units a prefix followed by an @ splits into: ``(?!UNIT{65,}@)`` fails from 65."""
    splits: int
    """How many splits of prefixes PCRE walks through to find those out (capped)."""


def _php_units(text: str) -> _Units:
    """PHP's look-aheads over ``UNIT = "?(\\[\x00-\x7e]|[^\\"])"?``, by dynamic programming over
    the positions of ``text``: the most units, and the number of splits, of each prefix."""
    most = [-1] * (len(text) + 1)  # the most units text[:i] splits into; -1 when it cannot
    splits = [0] * (len(text) + 1)  # in how many ways it does (capped)
    most[0], splits[0] = 0, 1
    before_at = 0
    for start, char in enumerate(text):
        if most[start] < 0:
            continue
        if char == "@":
            before_at = max(before_at, most[start])
        for core in (start, start + 1) if char == '"' else (start,):
            end = _unit_core_end(text, core)
            if end is None:
                continue
            for stop in (end, end + 1) if end < len(text) and text[end] == '"' else (end,):
                most[stop] = max(most[stop], most[start] + 1)
                splits[stop] = min(splits[stop] + splits[start], PHP_EMAIL_MAX_SPLITS + 1)
    return _Units(max(most), before_at, min(sum(splits), PHP_EMAIL_MAX_SPLITS + 1))


def _unit_core_end(text: str, core: int) -> int | None:
    """Where a unit's core starting at ``core`` ends: an escape pair, or one character that is
    neither a backslash nor a quote; None when there is none."""
    if core >= len(text) or text[core] == '"':
        return None
    if text[core] != "\\":
        return core + 1
    return core + 2 if core + 1 < len(text) and text[core + 1] <= "\x7e" else None


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
    "gbraid": normalize_click_id,
    "wbraid": normalize_click_id,
    "fbclid": normalize_click_id,
    "ttclid": normalize_click_id,
    "msclkid": normalize_click_id,
    "yclid": normalize_click_id,
    "ctwa_clid": normalize_click_id,
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
