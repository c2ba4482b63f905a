"""What people (and attackers) type, in every script: kept as written, minus what nobody can see.

Complements test_normalization_properties.py: names in Turkish, Arabic, Hebrew, Cyrillic, CJK and emoji
(with zero-width joiners) survive unchanged; control characters, bidi overrides and isolates (the
"Trojan Source" trick), and Unicode noncharacters are removed from free text and refused in e-mail
addresses and page URLs, so nothing a visitor types can reorder what a salesperson reads in the CRM,
smuggle a terminal escape into a log, or make SQS refuse the operation (it accepts no U+FFFE / U+FFFF);
phone numbers written for any country, in any format, give one E.164 number.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_bridge.models import Application, MessengerActivity, Origin, UpsertLeadOperation, dump_operation

TURKISH = "AaBbCcÇçDdEeFfGgĞğHhIıİiJjKkLlMmNnOoÖöPpRrSsŞşTtUuÜüVvYyZz"
SCRIPTS = st.sampled_from(
    [
        TURKISH,
        "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",  # Arabic, right to left
        "אבגדהוזחטיכלמנסעפצקרשת",  # Hebrew, right to left
        "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "李王张刘陈杨黄赵吴周",
        "अआइईउऊएऐओऔकखगघ",
        "áéíóúñüßøåæœ",
    ]
)
EMOJI = st.sampled_from(["😀", "👍🏽", "🇹🇷", "👨\u200d👩\u200d👧", "❤\ufe0f", "🧑\u200d🎓"])
CONTROLS = [chr(code) for code in (*range(9), 11, 12, *range(14, 32), 127, *range(0x80, 0xA0))]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"]
INVISIBLE = st.sampled_from(
    [*CONTROLS, *BIDI, "\u061c", "\u200b", "\ufeff", "\ufffe", "\uffff", "\ufdd0", "\U0001fffe"]
)
BIDI_AND_INVISIBLE = {ord(char) for char in [*BIDI, "\u061c"]}
SQS_FORBIDDEN = {0xFFFE, 0xFFFF}
"""SQS accepts #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF: only these two (and
surrogates, which pydantic refuses) can reach it from JSON."""


def words(script: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(
        script.flatmap(lambda letters: st.text(letters, min_size=1, max_size=8)), min_size=1, max_size=3
    ).map(" ".join)


@st.composite
def seeded_with_invisibles(draw: st.DrawFn, text: str) -> str:
    """``text`` with invisible characters slipped in anywhere."""
    chars = list(text)
    for _ in range(draw(st.integers(0, 6))):
        chars.insert(draw(st.integers(0, len(chars))), draw(INVISIBLE))
    return "".join(chars)


def shown(text: str) -> str:
    """What a reader sees of ``text``: NFC, invisible characters gone, whitespace collapsed."""
    visible = "".join(char for char in text if not _invisible(char) or char in " \n\t")
    return " ".join(unicodedata.normalize("NFC", visible).split())


def _invisible(char: str) -> bool:
    return unicodedata.category(char) == "Cc" or ord(char) in BIDI_AND_INVISIBLE | {0x200B, 0xFEFF} or _nonchar(char)


def _nonchar(char: str) -> bool:
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def assert_clean(value: str | None, *, multiline: bool = False) -> None:
    if value is None:
        return
    allowed = "\n\t" if multiline else ""
    assert not [char for char in value if _invisible(char) and char not in allowed], repr(value)


@given(data=st.data(), script=SCRIPTS, emoji=st.lists(EMOJI, max_size=2))
def test_a_name_in_any_script_is_kept_as_written_minus_the_invisible(
    data: st.DataObject, script: str, emoji: list[str]
) -> None:
    name = " ".join([data.draw(words(st.just(script))), *emoji])
    typed = data.draw(seeded_with_invisibles(name))

    application = Application.model_validate({"name": typed, "phone": "+905321234567"})

    assert application.name == shown(typed)
    assert_clean(application.name)
    person = application.person_name()
    assert " ".join(part for part in (person.first_name, person.last_name) if part) == application.name


@given(st.text(TURKISH, min_size=1, max_size=30))
def test_turkish_letters_are_never_case_folded_or_decomposed(text: str) -> None:
    application = Application.model_validate({"name": text, "email": "ayse@example.com"})
    assert application.name == unicodedata.normalize("NFC", text)


@given(data=st.data(), message=st.text(max_size=300), emoji=st.lists(EMOJI, max_size=3))
def test_every_free_text_field_loses_its_controls_and_stays_sendable(
    data: st.DataObject, message: str, emoji: list[str]
) -> None:
    fields: dict[str, Any] = {
        "name": data.draw(seeded_with_invisibles("Ayşe Yılmaz")),
        "program": data.draw(seeded_with_invisibles("İşletme")),
        "university": data.draw(seeded_with_invisibles("جامعة")),
        "message": data.draw(seeded_with_invisibles(message + "".join(emoji))),
        "phone": "+905321234567",
        "attribution": {"utm_campaign": data.draw(seeded_with_invisibles("bahar-kampanyası"))},
    }
    try:
        application = Application.model_validate(fields)
    except ValidationError as exc:  # a message of nothing but invisible characters is fine to refuse
        assert {tuple(error["loc"]) for error in exc.errors()} <= {("message",)}
        return
    assert application.attribution is not None
    for value in (application.name, application.program, application.university, application.attribution.utm_campaign):
        assert_clean(value)
    assert_clean(application.message, multiline=True)
    for sequence in emoji:
        assert application.message is not None
        assert sequence in application.message, "emoji (and their joiners) survive"
    body = dump_operation(UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application))
    assert not {ord(char) for char in body} & SQS_FORBIDDEN, "SQS would refuse the message"
    assert json.loads(body)["payload"]["name"] == application.name


@given(local=st.text(min_size=1, max_size=10), invisible=INVISIBLE, where=st.integers(0, 10))
def test_an_email_with_an_invisible_character_is_refused(local: str, invisible: str, where: int) -> None:
    address = f"{local[:where]}{invisible}{local[where:]}@example.com"
    try:
        application = Application.model_validate({"name": "Ayşe", "email": address})
    except ValidationError as exc:
        assert {tuple(error["loc"]) for error in exc.errors()} == {("email",)}
        return
    assert_clean(application.email)  # only when it was leading whitespace, trimmed like a space


@given(path=st.text(max_size=40), invisible=INVISIBLE)
def test_a_page_url_carries_nothing_invisible(path: str, invisible: str) -> None:
    try:
        activity = MessengerActivity.model_validate(
            {"channel": "telegram", "session_id": "visitor-session-1", "page": f"/{path}{invisible}"}
        )
    except ValidationError:
        return
    assert_clean(activity.page)  # trailing whitespace-like controls are trimmed; nothing else gets through


REGIONS = sorted(
    region
    for region in phonenumbers.SUPPORTED_REGIONS
    if phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
)
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@given(
    region=st.sampled_from(REGIONS),
    form=st.sampled_from(["e164", "international", "rfc3966", "dialled from turkey", "dotted", "parenthesised"]),
    digits=st.sampled_from([None, FULL_WIDTH, ARABIC_INDIC]),
    padding=st.sampled_from(["", " ", "\u00a0", "\t"]),
)
def test_a_phone_number_of_any_country_in_any_format_gives_one_e164(
    region: str, form: str, digits: dict[int, str] | None, padding: str
) -> None:
    number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert number is not None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    written = {
        "e164": e164,
        "international": international,
        "rfc3966": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.RFC3966),
        "dialled from turkey": phonenumbers.format_out_of_country_calling_number(number, "TR"),
        "dotted": international.replace(" ", ".").replace("-", "."),
        "parenthesised": international.replace(" ", " (", 1).replace(" ", ") ", 1),
    }[form]
    typed = padding + (written.translate(digits) if digits else written) + padding

    assert Application.model_validate({"name": "Ayşe", "phone": typed}).phone == e164


@given(
    field=st.sampled_from(["name", "first_name", "last_name", "program", "university", "message"]),
    size=st.integers(4_001, 200_000),
)
def test_a_huge_value_in_any_text_field_is_refused_by_that_field(field: str, size: int) -> None:
    with pytest.raises(ValidationError) as exc:
        Application.model_validate({"name": "Ayşe", "phone": "+905321234567", field: "ş" * size})
    assert {tuple(error["loc"]) for error in exc.value.errors()} == {(field,)}
