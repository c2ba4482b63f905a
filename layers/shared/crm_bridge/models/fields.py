"""The models' field types: the normalisation rules (``crm_bridge.normalization``) as pydantic types.

Trimmed, cleaned, bounded; an empty string means absent.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from crm_bridge.normalization import (
    MEDIUM_TEXT_LENGTH,
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
