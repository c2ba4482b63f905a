"""Whatever the application form accepts, the CRM takes (issue #12).

An application that passes the API model is answered 202 or 201: from then on nobody can ask the
visitor to fix it. So every such application must reach the CRM: never a PermanentCrmError (the
dead-letter queue). The CRM may still refuse one field the visitor could not have fixed (a phone
number its libphonenumber does not know yet); then the lead is written without it and the value is
kept in its text. An e-mail address is never one of those: the API applies the CRM's own rule.

The input is what real forms see: names in Latin, Turkish, Cyrillic, Arabic and CJK script with
emoji, the longest names the form allows, international e-mail addresses (internationalised
domains, quoted local parts, address literals), and phone numbers of every region in every format.
Deterministic (derandomized) and bounded, so it runs in every ``make test``.

The CRM under test is the ``crm_under_test`` fixture's parameter (:data:`CRMS`): the EspoCRM
simulator, and the real EspoCRM 8.4.2, whose own validation then decides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import phonenumbers
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.models import Application
from crm_bridge.providers import CrmProvider, LeadAction, build_provider
from crm_bridge.settings import load_settings
from tests.real_crm.fixtures import RealEspoCrm
from tests.simulators.espocrm import SimulatedEspoCrm


@dataclass(frozen=True)
class CrmUnderTest:
    provider: CrmProvider
    lead_text: Callable[[str], str]
    """A lead's description, as the CRM stores it."""
    timeline: Callable[[str], list[str]]
    """The texts of the notes on a lead's timeline, oldest first."""


@contextmanager
def simulated_espocrm(request: pytest.FixtureRequest) -> Iterator[CrmUnderTest]:
    key = "property-espo-key-5a2c"
    with SimulatedEspoCrm(api_key=key) as espocrm:
        settings_ = load_settings({"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": espocrm.base_url, "ESPOCRM_API_KEY": key})
        yield CrmUnderTest(
            build_provider(settings_, load_field_mapping()),
            lambda lead_id: str(espocrm.lead(lead_id)["description"] or ""),
            espocrm.timeline,
        )


@contextmanager
def real_espocrm(request: pytest.FixtureRequest) -> Iterator[CrmUnderTest]:
    """The real EspoCRM (tests/real_crm): what it stores is read back as its administrator."""
    real: RealEspoCrm = request.getfixturevalue("real_espocrm")
    proxy = real.proxy()
    state = real.state(proxy)
    settings_ = load_settings(
        {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": real.site.url, "ESPOCRM_API_KEY": real.api_key}
    )
    provider = build_provider(settings_, load_field_mapping())
    try:
        yield CrmUnderTest(provider, lambda lead_id: str(state.lead(lead_id).get("description") or ""), state.timeline)
    finally:
        provider.close()
        proxy.close()
        state.clean()


CRMS: dict[str, Callable[[pytest.FixtureRequest], AbstractContextManager[CrmUnderTest]]] = {
    "espocrm-simulator": simulated_espocrm,
    "real-espocrm": real_espocrm,
}


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=[pytest.mark.real_espocrm] if name.startswith("real") else []) for name in CRMS],
)
def crm_under_test(request: pytest.FixtureRequest) -> Iterator[CrmUnderTest]:
    """One CRM for the whole property run: its leads pile up, so repeat submissions happen too."""
    with CRMS[request.param](request) as crm:
        yield crm


# --- what visitors type ----------------------------------------------------------------------------

LETTERS = {
    "latin": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "turkish": "çğıöşüÇĞİÖŞÜâî",
    "european": "äßéèñøåæœłżźćńąęÄÉÑØÅ",
    "cyrillic": "абвгдежзийклмнопрстуфхцчшщъыьэюяёАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЭЮЯ",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهويءآأؤإئ",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年李王张刘陈杨黄赵吴周",
    "hangul": "김이박최정강조윤장임한오서신권황안송류홍",
}
EMOJI = ["😀", "👩\u200d🎓", "🇹🇷", "❤️", "🎓", "✨", "👍🏽"]
WORD = st.one_of(
    *(st.text(alphabet=alphabet, min_size=1, max_size=14) for alphabet in LETTERS.values()),
    st.sampled_from(EMOJI),
    st.sampled_from(["O'Brien", "Jean-Luc", "d'Artagnan", "Mc-Donald", "van der Berg"]),
)
NAME = st.one_of(
    st.lists(WORD, min_size=1, max_size=5).map(" ".join),
    st.sampled_from(["Ayşe Yılmaz", "İsmail Çağlar", "Иван Петров", "محمد علي", "李雷", "김민준", "Zoë 👩\u200d🎓"]),
    st.text(alphabet=LETTERS["latin"] + LETTERS["arabic"] + " ", min_size=90, max_size=110),  # the longest names
)
FREE_TEXT = st.one_of(
    st.lists(WORD, max_size=40).map(" ".join),
    st.text(max_size=300),
    st.text(alphabet=LETTERS["cyrillic"] + LETTERS["cjk"] + "".join(EMOJI) + " ", min_size=240, max_size=260),
)

LOCAL_PART = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,24}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}){0,3}", fullmatch=True),
    st.text(alphabet=LETTERS["turkish"] + LETTERS["cyrillic"] + "abc.", min_size=1, max_size=12),
    st.sampled_from(['"john.doe"', '"ali..veli"', '"a\\"b"', '"john doe"', "x" * 64, "x" * 65, "user.", ".user"]),
)
DOMAIN_LABEL = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True),
    st.sampled_from(
        ["gmail", "example", "bücher", "münchen", "straße", "пример", "例え", "مثال", "ελληνικά", "xn--p1ai"]
    ),
)
TOP_LABEL = st.sampled_from(["com", "de", "co.uk", "com.tr", "ru", "рф", "テスト", "中国", "xn--p1ai", "c", "123"])
DOMAIN = st.one_of(
    st.builds(lambda labels, top: ".".join([*labels, top]), st.lists(DOMAIN_LABEL, min_size=1, max_size=3), TOP_LABEL),
    st.sampled_from(["[127.0.0.1]", "[IPv6:2001:db8::1]", "[300.1.1.1]"]),
)
EMAIL = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL_PART, DOMAIN)

NUMBER_TYPES = [
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
    phonenumbers.PhoneNumberType.VOIP,
]
FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]


@st.composite
def phones(draw: st.DrawFn) -> str:
    """A number of any region and type, with its last digits varied, written any way people do."""
    region = draw(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(NUMBER_TYPES)))
    if example is None:
        example = phonenumbers.example_number(region) or phonenumbers.parse("+905321234567")
    digits = str(example.national_number)
    varied = digits[:-2] + draw(st.from_regex(r"[0-9]{2}", fullmatch=True)) if len(digits) > 4 else digits
    number = phonenumbers.parse(f"+{example.country_code}{'0' if example.italian_leading_zero else ''}{varied}")
    written = phonenumbers.format_number(number, draw(st.sampled_from(FORMATS)))
    style = draw(st.sampled_from(["as is", "dots", "dashes", "00", "brackets", "spaceless"]))
    if style == "dots":
        written = written.replace(" ", ".")
    elif style == "dashes":
        written = written.replace(" ", "-")
    elif style == "00" and written.startswith("+"):
        written = "00" + written[1:]
    elif style == "brackets" and written.startswith("+"):
        written = f"(+{number.country_code}) {written[len(str(number.country_code)) + 1 :].strip()}"
    elif style == "spaceless":
        written = written.replace(" ", "")
    return written


PHONE = st.one_of(
    phones(),
    st.sampled_from(["0532 123 45 67", "+229 01 95 12 34 56", "+383 38 981 234 56", "+7 916 123-45-67", "12"]),
)
CONTACT = st.one_of(
    st.fixed_dictionaries({"phone": PHONE}),
    st.fixed_dictionaries({"email": EMAIL}),
    st.fixed_dictionaries({"phone": PHONE, "email": EMAIL}),
)
FORMS = st.fixed_dictionaries(
    {"name": NAME},
    optional={
        "user_type": st.sampled_from(["student", "parent", "other"]),
        "preferred_language": st.sampled_from(["tr", "en", "ru", "ar", "zh", "pt-br"]),
        "program": FREE_TEXT,
        "university": FREE_TEXT,
        "message": st.text(max_size=600),
        "consent": st.booleans(),
        "attribution": st.fixed_dictionaries(
            {},
            optional={
                "referral_code": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True),
                "utm_source": FREE_TEXT,
                "utm_campaign": FREE_TEXT,
                "utm_content": st.sampled_from(["🎓 autumn", "осень", "الخريف", "秋季招生"]),
                "gclid": st.from_regex(r"[A-Za-z0-9_\-.~]{1,300}", fullmatch=True),
            },
        ),
    },
).flatmap(lambda form: CONTACT.map(lambda contact: {**form, **contact}))


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(form=FORMS)
def test_every_application_the_api_accepts_reaches_the_crm(crm_under_test: CrmUnderTest, form: dict[str, Any]) -> None:
    try:
        application = Application.model_validate(form)
    except ValidationError as refused:
        event(
            "refused at the API: " + ", ".join(sorted({str((*error["loc"], "form")[0]) for error in refused.errors()}))
        )
        return  # refused at the API, by field name: the visitor can fix it

    result = crm_under_test.provider.upsert_lead(application, uuid4())  # a PermanentCrmError fails the test

    assert set(result.dropped_fields) <= {"phoneNumber", "phoneNumberData"}, (
        f"the CRM refused {result.dropped_fields}: the API must refuse what the visitor can fix"
    )
    event(f"{result.action.value} in the CRM" + (", without its phone field" if result.dropped_fields else ""))
    if result.dropped_fields:
        text = (
            crm_under_test.lead_text(result.record_id)
            if result.action is LeadAction.CREATED
            else crm_under_test.timeline(result.record_id)[-1]
        )
        assert f"Phone: {application.phone}" in text.split("\n")
