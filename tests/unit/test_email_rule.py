"""The e-mail rule: an address is accepted exactly when EspoCRM will store it (issue #12).

EspoCRM 8.4.2 keeps an e-mail address only if PHP's ``filter_var(FILTER_VALIDATE_EMAIL)`` accepts
it, and refuses the whole lead otherwise (a 400 that used to dead-letter the application). Every
address of :data:`CHECKED_ON_ESPOCRM` was sent to a real EspoCRM 8.4.2 (PHP 8.2.36, PCRE2 10.42)
as ``POST /api/v1/Lead`` with that ``emailAddress``; the second column is what it answered: True
for 200, False for 400 ``{field: emailAddress, type: emailAddress}``.
"""

from __future__ import annotations

import base64
import random
import shutil
import subprocess
import sys
import time

import pytest
from pydantic import ValidationError

from crm_bridge.models import Application
from crm_bridge.normalization import PHP_EMAIL_MAX_SPLITS, normalize_email, php_validates_email
from tests.simulators.espocrm import php_validates_email as simulator_validates_email

DOMAIN_254 = ("a" * 63 + ".") * 3 + "b" * 57 + ".de"
"""With ``u@`` in front: 254 characters, PHP's longest (its look-ahead refuses 255 units)."""

CHECKED_ON_ESPOCRM: list[tuple[str, bool]] = [
    # the three applications of issue #12
    ("ayşe@gmail.com", False),
    ("ali..veli@example.com", False),
    ("user.@example.com", False),
    # the local part
    (".user@example.com", False),
    ("ayse@gmail.com", True),
    ("jane.doe+tag@example.com", True),
    ("o'brien@example.ie", True),
    ("USER@EXAMPLE.COM", True),
    ("john doe@example.com", False),
    ("a,b@example.com", False),
    ("a@b@example.com", False),
    # quoted local parts: dots and escapes allowed inside, a bare space or a non-ASCII letter is not
    ('"ali..veli"@example.com', True),
    ('"a\\"b"@example.com', True),
    ('"john doe"@example.com', False),
    ('"ayşe"@gmail.com', False),
    # the domain: dotted, labels of letters, digits and inner hyphens, a top label starting with a letter
    ("a@b.c", True),
    ("x@y", False),
    ("user@localhost", False),
    ("user@-example.com", False),
    ("user@example-.com", False),
    ("user@example.123", False),
    ("user@example.c0m", True),
    ("user@ex_ample.com", False),
    # address literals
    ("user@[127.0.0.1]", True),
    ("user@[256.1.1.1]", False),
    ("user@[IPv6:2001:db8::1]", True),
    ("user@[IPv6:2001:db8:0:0:0:0:0:1]", True),
    ("user@[2001:db8::1]", False),
    # internationalised domains: only in their ASCII (punycode) form
    ("user@bücher.de", False),
    ("user@xn--bcher-kva.de", True),
    ("ivan@пример.рф", False),
    ("ivan@xn--e1afmkfd.xn--p1ai", True),
    # length limits: 64 before the @, 63 per label, 254 in all
    ("x" * 64 + "@example.com", True),
    ("x" * 65 + "@example.com", False),
    ("user@" + "a" * 63 + ".com", True),
    ("user@" + "a" * 64 + ".com", False),
    ("u@" + DOMAIN_254, True),
    ("uu@" + DOMAIN_254, False),
    # PCRE gives up backtracking through the quotes (filter_var then answers false)
    ('"a".' * 7 + "b@example.com", False),
]

BEYOND_OUR_MARGIN = ['"a".' * 6 + "b@example.com"]
"""Accepted by EspoCRM, refused by us: within a fifth of where PCRE gives up (PHP_EMAIL_MAX_SPLITS)."""


@pytest.mark.parametrize(("address", "espocrm_accepts"), CHECKED_ON_ESPOCRM)
def test_the_port_answers_as_espocrm_did(address: str, espocrm_accepts: bool) -> None:
    assert php_validates_email(address) is espocrm_accepts


@pytest.mark.parametrize(("address", "espocrm_accepts"), CHECKED_ON_ESPOCRM)
def test_the_simulator_answers_as_espocrm_did(address: str, espocrm_accepts: bool) -> None:
    assert simulator_validates_email(address) is espocrm_accepts


@pytest.mark.parametrize("address", BEYOND_OUR_MARGIN)
def test_addresses_near_pcres_backtracking_limit_are_refused_though_espocrm_took_them(address: str) -> None:
    assert simulator_validates_email(address)
    assert not php_validates_email(address)


@pytest.mark.parametrize("address", ["ayşe@gmail.com", "ali..veli@example.com", "user.@example.com"])
def test_the_issue_12_addresses_are_refused_by_the_api_model_naming_the_field(address: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Application.model_validate({"name": "Ayşe Yılmaz", "email": address})
    (error,) = refused.value.errors()
    assert error["loc"] == ("email",)
    assert "before the @" in error["msg"]


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("ayşe@gmail.com", "letters such as ş"),
        ("ali..veli@example.com", "two dots in a row"),
        ("user.@example.com", "start or end with a dot"),
        ("x" * 65 + "@example.com", "longer than 64"),
        ("john doe@example.com", "such as a space"),
        ("user@example", "the domain after the @"),
        ("user@example.123", "the domain after the @"),
        ("user@exa mple.com", "the domain after the @"),
        ("user@bad_label.de", "the domain after the @"),
        ("user@١٢٣.com", "not a valid domain name"),
        ("userexample.com", "it needs a name, an @ and a domain"),
        ("@example.com", "it needs a name, an @ and a domain"),
        ("u" + "@" + "a" * 250 + ".de", "longer than 254"),
        ("ay\u200bse@gmail.com", "invisible"),
    ],
)
def test_a_refusal_says_what_to_fix(typed: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_email(typed)


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("user@bücher.de", "user@xn--bcher-kva.de"),
        ("User@BÜCHER.DE", "user@xn--bcher-kva.de"),
        ("ivan@пример.рф", "ivan@xn--e1afmkfd.xn--p1ai"),
        ("taro@例え。テスト", "taro@xn--r8jz45g.xn--zckzah"),  # an ideographic full stop is a dot
        ("ali@ＥＸＡＭＰＬＥ．ｃｏｍ", "ali@example.com"),  # full-width forms
        ("hans@straße.de", "hans@xn--strae-oqa.de"),  # IDNA 2008: not IDNA 2003's strasse.de
        ('"ali..veli"@example.com', '"ali..veli"@example.com'),
        ("user@[127.0.0.1]", "user@[127.0.0.1]"),
        ("x" * 64 + "@example.com", "x" * 64 + "@example.com"),
        ("u@" + DOMAIN_254, "u@" + DOMAIN_254),
    ],
)
def test_what_the_api_keeps_espocrm_accepts(typed: str, kept: str) -> None:
    assert normalize_email(typed) == kept
    assert php_validates_email(kept)
    assert simulator_validates_email(kept)


@pytest.mark.parametrize(
    ("hostile", "php_accepts"),
    [
        ('"a".' * 60 + "@x.com", False),
        ('"a".' * 40 + "b@x.com", False),  # PCRE gives up
        ('"' + '\\"' * 120 + '"@x.com', False),
        ('""' + '.""' * 100 + "@x.com", True),  # no unit starts at a quote before a quote: nothing to try
        ("a@" + "xn--a." * 40 + "1", False),
        ("a@" + "a." * 120 + "1", False),
        ("a@" + "a." * 120 + "com", True),
        ("a@[IPv6:" + "a:" * 120 + "]", False),
        ("a" * 64 + "@" + "a-" * 120 + "b", False),
    ],
)
def test_the_port_takes_linear_time_where_pcre_backtracks(hostile: str, php_accepts: bool) -> None:
    """What PHP answered for each (checked with its filter_var); Python's re, which has no
    backtracking limit, would take hours over several of them with PHP's regex as it is."""
    started = time.perf_counter()
    assert php_validates_email(hostile) is php_accepts
    assert time.perf_counter() - started < 0.05


def test_checking_an_address_loads_idna_only_for_an_internationalised_domain() -> None:
    probe = (
        "import sys\n"
        "from crm_bridge.normalization import normalize_email\n"
        "normalize_email('jane@example.com')\n"
        "print('idna' in sys.modules, 'pydantic' in sys.modules)\n"
        "normalize_email('jane@bücher.de')\n"
        "print('idna' in sys.modules)\n"
    )
    completed = subprocess.run(  # noqa: S603 - this interpreter, a fixed probe
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert completed.stdout.split() == ["False", "False", "True"]


# --- against PHP itself --------------------------------------------------------------------------


def _odd_addresses(count: int, seed: int) -> list[str]:
    """Addresses near every edge of the rule: quotes, escapes, dots, literals, lengths, scripts."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible sample, not a secret
    atom_chars = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
    odd = [".", '"', "\\", "@", " ", ",", "[", "]", "\x00", "\n", "\x7f", "ş", "я", "名", "😀"]

    def local() -> str:
        parts = []
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.25:
                inner = "".join(rng.choice([*atom_chars, " ", "@", ".", '\\"', "\\\\", "ş"]) for _ in range(4))
                parts.append(f'"{inner}"')
            else:
                parts.append("".join(rng.choice(atom_chars) for _ in range(rng.randint(1, 8))))
        joined = ".".join(parts)
        return rng.choice([joined, joined, joined, "." + joined, joined + ".", "x" * rng.choice([63, 64, 65])])

    def domain() -> str:
        if rng.random() < 0.15:
            return rng.choice(["[1.2.3.4]", "[IPv6:::1]", "[IPv6:1:2:3:4:5:6:7:8]", "[IPv6:1::2:1.2.3.4]", "[1.2.3]"])
        valid = ["mail", "example", "xn--p1ai", "a-b", "a--b", "1", "a" * 63]
        labels = [rng.choice([*valid, *valid, "-a", "a-", "a" * 64, "b_c", "ü"]) for _ in range(rng.randint(1, 4))]
        return ".".join([*labels, rng.choice(["com", "com", "c", "c0m", "xn--p1ai", "co-uk", "1", "a-"])])

    addresses = []
    for _ in range(count):
        address = f"{local()}@{domain()}"
        if rng.random() < 0.2:
            where = rng.randrange(len(address))
            address = address[:where] + rng.choice(odd) + address[where + 1 :]
        addresses.append(address)
    return addresses


@pytest.mark.skipif(shutil.which("php") is None, reason="needs a php binary (EspoCRM's own PHP, ideally)")
def test_the_port_agrees_with_php_filter_var() -> None:
    addresses = _odd_addresses(3000, seed=12) + [address for address, _ in CHECKED_ON_ESPOCRM] + BEYOND_OUR_MARGIN
    script = (
        "while (($line = fgets(STDIN)) !== false) {"
        " echo filter_var(base64_decode(trim($line)), FILTER_VALIDATE_EMAIL) === false ? '0' : '1', PHP_EOL; }"
    )
    lines = "".join(base64.b64encode(a.encode("utf-8", "surrogatepass")).decode() + "\n" for a in addresses)
    php = shutil.which("php")
    assert php is not None
    answers = subprocess.run(  # noqa: S603 - the php binary, a fixed script
        [php, "-r", script], input=lines, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(answers) == len(addresses)
    disagreements = [
        (address, answer)
        for address, answer in zip(addresses, answers, strict=True)
        if php_validates_email(address) != (answer == "1") and address not in BEYOND_OUR_MARGIN
    ]
    assert disagreements == []
    assert answers.count("1") > len(addresses) // 10, "the sample reaches addresses PHP accepts"


def test_the_margin_under_pcres_limit_is_a_fifth_of_it() -> None:
    assert PHP_EMAIL_MAX_SPLITS * 5 <= 125_000
