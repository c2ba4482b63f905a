"""Whatever a visitor types, normalisation either refuses it by field name or yields clean data."""

from __future__ import annotations

import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_bridge.models import Application, Attribution
from crm_bridge.normalization import clean_text

NAMES = st.sampled_from(["Ayşe Yılmaz", "İsmail Çağlar", "Иван Петров", "محمد علي", "Zoë O'Brien", "李雷"])
ANY_TEXT = st.text(min_size=0, max_size=300)

settings.register_profile("crm-bridge", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("crm-bridge")


@given(
    name=st.one_of(NAMES, ANY_TEXT), message=ANY_TEXT, phone=st.one_of(ANY_TEXT, st.from_regex(r"\+?[0-9 ()-]{4,20}"))
)
def test_any_input_is_either_clean_or_refused_by_field(name: str, message: str, phone: str) -> None:
    try:
        application = Application.model_validate({"name": name, "phone": phone, "message": message})
    except ValidationError as exc:
        assert all(error["loc"] for error in exc.errors()) or "give a" in str(exc)
        return
    assert application.phone is not None
    assert phonenumbers.is_valid_number(phonenumbers.parse(application.phone))
    assert application.phone.startswith("+")
    for text in (application.name, application.message):
        assert text is None or not any(ord(char) < 32 and char not in "\n\t" for char in text)
        assert text is None or text == text.strip()


@given(st.sampled_from(["+90 532 123 45 67", "0532 123 45 67", "(0532) 123-45-67", "00905321234567", "+905321234567"]))
def test_every_way_of_writing_a_number_gives_one_e164(phone: str) -> None:
    assert Application.model_validate({"name": "Ayşe", "phone": phone}).phone == "+905321234567"


@given(st.emails())
def test_valid_emails_survive_lower_cased(email: str) -> None:
    try:
        application = Application.model_validate({"name": "Ayşe", "email": email})
    except ValidationError as exc:
        assert {tuple(error["loc"]) for error in exc.errors()} == {("email",)}
        return
    assert application.email == email.strip().lower()


@given(ANY_TEXT)
def test_cleaning_is_idempotent(text: str) -> None:
    once = clean_text(text)
    assert once is None or clean_text(once) == once


@given(st.text(max_size=100_000).map(lambda s: s * 3))
def test_huge_strings_are_refused_quickly_not_stored(text: str) -> None:
    try:
        Application.model_validate({"name": "Ayşe", "email": "a@b.co", "program": text})
    except ValidationError as exc:
        assert {tuple(error["loc"]) for error in exc.errors()} == {("program",)}


@given(st.text(max_size=80))
def test_a_referral_code_is_safe_or_refused(code: str) -> None:
    try:
        attribution = Attribution(referral_code=code)
    except ValidationError:
        return
    assert attribution.referral_code is None or all(
        char.isascii() and (char.isalnum() or char in "-_") for char in attribution.referral_code
    )
