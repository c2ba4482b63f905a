"""An agency's Bitrix24 portal as years of salespeople left it, for the migration tests and the bench.

Leads with phones in the forms people type (``0532 123 45 67``, ``+90 (532) 123-45-67``,
``5321234567``, ``0090 532 123 4567``), some with a second number or no phone at all, e-mails in
any case, stages from new to converted and junk, UTM fields and the agency's ``UF_CRM_*`` fields,
creation dates over two years and a few timeline comments each; some people twice (a salesperson
made a second lead); and some who later applied again through the website, after the switch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.simulators.bitrix24 import SimulatedBitrix24

FIRST_NAMES = ("Ayşe", "Mehmet", "Zeynep", "Emre", "Elif", "Can", "Selin", "Burak", "Deniz", "Ece", "Kerem", "Nur")
LAST_NAMES = ("Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Aydın", "Öztürk", "Arslan", "Doğan", "Kılıç")
PROGRAMS = ("Computer Science BSc", "MBA", "Medicine", "Architecture MArch", "Law LLM")
UNIVERSITIES = ("TU Munich", "University of Vienna", "Sapienza", "KU Leuven", "Charles University")
STAGES = ("NEW", "NEW", "IN_PROCESS", "IN_PROCESS", "PROCESSED", "CONVERTED", "JUNK")
SOURCES = ("WEB", "CALL", "EMAIL", "PARTNER", "ADVERTISING")
COMMENTS = (
    "Called, no answer. Try again on Monday.",
    "Interested in the autumn intake; sent the brochure.",
    "Parent called: asked about dormitories and fees.",
    "Documents received: transcript and passport copy.",
    "Wants a scholarship; budget is tight.",
    "Meeting at the office on Thursday 15:00.",
)
EPOCH = datetime(2024, 9, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Person:
    number: int
    first_name: str
    last_name: str
    mobile: str | None
    """E.164."""
    email: str | None

    @property
    def typed_mobile(self) -> str:
        """The mobile as a salesperson typed it: one of the usual forms, chosen by the person."""
        assert self.mobile is not None
        national = self.mobile.removeprefix("+90")
        area, rest = national[:3], national[3:]
        forms = (
            f"0{area} {rest[:3]} {rest[3:5]} {rest[5:]}",
            f"+90 ({area}) {rest[:3]}-{rest[3:5]}-{rest[5:]}",
            national,
            f"0090 {area} {rest}",
            f"+90{national}",
        )
        return forms[self.number % len(forms)]


@dataclass
class SeededPortal:
    people: list[Person]
    lead_ids: dict[int, list[str]] = field(default_factory=dict)
    """Person number -> their Bitrix24 lead ids (two for the people a salesperson entered twice)."""
    comments: dict[str, list[str]] = field(default_factory=dict)
    """Bitrix24 lead id -> its comments' texts, oldest first."""

    @property
    def lead_count(self) -> int:
        return sum(len(ids) for ids in self.lead_ids.values())


def person(number: int) -> Person:
    chance = random.Random(number)  # noqa: S311 - a reproducible portal, not a secret
    mobile = f"+90{chance.choice(('532', '533', '542', '505', '555'))}{number:07d}" if number % 23 != 0 else None
    first, last = chance.choice(FIRST_NAMES), chance.choice(LAST_NAMES)
    email = f"{first[0]}.{last}.{number}@Example.com".replace("ı", "i").replace("ş", "s").replace("ç", "c")
    for letter, ascii_letter in zip("öğüŞÇÖ", "oguSCO", strict=True):
        email = email.replace(letter, ascii_letter)
    has_email = number % 3 != 0 or mobile is None
    return Person(number, first, last, mobile, email if has_email else None)


def seed_portal(portal: SimulatedBitrix24, leads: int, *, seed: int = 7) -> SeededPortal:
    """``leads`` leads: about one person in 40 entered twice; returns who is who."""
    chance = random.Random(seed)  # noqa: S311 - a reproducible portal, not a secret
    seeded = SeededPortal(people=[])
    number = 0
    while seeded.lead_count < leads:
        number += 1
        someone = person(number)
        seeded.people.append(someone)
        times = 2 if number % 40 == 7 and seeded.lead_count + 2 <= leads else 1
        for copy in range(times):
            created = EPOCH + timedelta(hours=17 * number + copy * 30, minutes=chance.randrange(60))
            comments = [
                (chance.choice(COMMENTS) + f" ({someone.number}.{index})", created + timedelta(days=index + 1))
                for index in range(chance.randrange(0, 5))
            ]
            phones = [{"VALUE": someone.typed_mobile, "VALUE_TYPE": "MOBILE"}] if someone.mobile else []
            if someone.mobile and number % 9 == 0:
                phones.append({"VALUE": f"(0212) 555 {number % 100:02d} {number % 89:02d}", "VALUE_TYPE": "WORK"})
            if number % 97 == 0:
                phones.append({"VALUE": "ext. 12", "VALUE_TYPE": "OTHER"})  # not a number anyone can dial
            attributes: dict[str, Any] = {
                "STATUS_ID": chance.choice(STAGES),
                "SOURCE_ID": chance.choice(SOURCES),
                "COMMENTS": f"Came through {chance.choice(SOURCES).lower()}." if number % 4 == 0 else "",
                "UTM_SOURCE": chance.choice(("google", "facebook", "instagram", "")),
                "UTM_MEDIUM": chance.choice(("cpc", "social", "")),
                "UTM_CAMPAIGN": chance.choice(("spring-intake", "autumn-intake", "")),
                "UF_CRM_PROGRAM": chance.choice(PROGRAMS),
                "UF_CRM_UNIVERSITY": chance.choice(UNIVERSITIES),
                "UF_CRM_REFERRAL_CODE": f"PARTNER-{number % 13}" if number % 5 == 0 else "",
                "UF_CRM_CONSENT": "Y" if number % 2 == 0 else "N",
            }
            if phones:
                attributes["PHONE"] = phones
            if someone.email:
                attributes["EMAIL"] = [{"VALUE": someone.email, "VALUE_TYPE": "WORK"}]
            lead_id = portal.seed_lead(
                first_name=someone.first_name,
                last_name=someone.last_name,
                attributes={key: value for key, value in attributes.items() if value != ""},
                created_at=created,
                comments=comments,
            )
            seeded.lead_ids.setdefault(number, []).append(lead_id)
            seeded.comments[lead_id] = [text for text, _ in comments]
    return seeded
