"""The models' field types: the normalisation rules (``crm_bridge.normalization``) as pydantic types.

Trimmed, cleaned, bounded; an empty string means absent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, StringConstraints

from crm_bridge.normalization import (
    CONSENT_VERSION_PATTERN,
    MAX_PAGE_URL_LENGTH,
    MEDIUM_TEXT_LENGTH,
    PAGE_URL_PATTERN,
    bounded_text,
    normalize_click_id,
    normalize_email,
    normalize_phone,
    normalize_referral_code,
)


def _bounded(max_length: int, *, multiline: bool = False) -> AfterValidator:
    return AfterValidator(lambda value: None if value is None else bounded_text(value, max_length, multiline=multiline))


def _empty_to_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


EmptyIsNone = BeforeValidator(_empty_to_none)

ShortText = Annotated[str | None, EmptyIsNone, _bounded(100)]
MediumText = Annotated[str | None, EmptyIsNone, _bounded(MEDIUM_TEXT_LENGTH)]
LongText = Annotated[str | None, EmptyIsNone, _bounded(4000, multiline=True)]
Phone = Annotated[str | None, EmptyIsNone, AfterValidator(lambda v: None if v is None else normalize_phone(v))]
Email = Annotated[str | None, EmptyIsNone, AfterValidator(lambda v: None if v is None else normalize_email(v))]
ReferralCode = Annotated[
    str | None, EmptyIsNone, AfterValidator(lambda v: None if v is None else normalize_referral_code(v))
]
ClickId = Annotated[str | None, EmptyIsNone, AfterValidator(lambda v: None if v is None else normalize_click_id(v))]
PageUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_PAGE_URL_LENGTH, pattern=f"^{PAGE_URL_PATTERN.pattern}$"),
]
ConsentVersion = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=f"^{CONSENT_VERSION_PATTERN.pattern}$")
]


def _date_time_text(value: object) -> object:
    """JSON carries a time as ISO 8601 text, as the API documents; a bare number (which pydantic would
    read as Unix time) is refused rather than guessed at."""
    if not isinstance(value, str | datetime):
        raise ValueError("give the time as an ISO 8601 date-time with its offset, e.g. 2024-05-01T12:30:00Z")
    return value


OccurredAt = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]
