"""A study-abroad agency's whole Bitrix24 portal, as years of work left it, for the whole-CRM move (#23).

Full size (``scale=1``): ~2,000 leads, 800 contacts, 300 companies, 600 deals in two pipelines
("Bachelor", the default, and "Master") with custom stages, 5,000 activities, 10 users (two of whom
left), 13 user fields of every type on each entity, 300 files, Open Channel leads holding only a
title and a chat handle, converted leads linked to the contact, company and deal they became, and
timeline comments by their authors, some with files. ``make test`` uses a small ``scale``; the bench
the full one. Deterministic from ``seed``; stored straight into the simulator (no HTTP), so fast.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.migration.agency import COMMENTS, FIRST_NAMES, LAST_NAMES, PROGRAMS, UNIVERSITIES
from tests.simulators.bitrix24 import SimulatedBitrix24, _now_iso
from tests.simulators.bitrix24_portal import BINDING_PREFIXES, ENTITY_TYPE_IDS, PortalUserField

FULL_SIZE = {"lead": 2000, "contact": 800, "company": 300, "deal": 600, "activity": 5000, "file": 300}
EPOCH = datetime(2023, 9, 1, 9, 0, tzinfo=UTC)
USERS = (
    ("Aylin", "Koç", "aylin.koc@agency.example", True),
    ("Murat", "Aksoy", "murat.aksoy@agency.example", True),
    ("Derya", "Polat", "derya.polat@agency.example", True),
    ("Oğuz", "Tekin", "oguz.tekin@agency.example", True),
    ("Seda", "Kurt", "seda.kurt@agency.example", True),
    ("Hakan", "Özdemir", "hakan.ozdemir@agency.example", True),
    ("Gizem", "Yıldız", "gizem.yildiz@agency.example", True),
    ("Tolga", "Erdem", "tolga.erdem@agency.example", True),
    ("Pınar", "Acar", "pinar.acar@agency.example", False),
    ("Serkan", "Güneş", "serkan.gunes@agency.example", False),
)
"""The salespeople; the last two left the agency (``ACTIVE`` false)."""
LEAD_STAGES = (
    ("NEW", "Unassigned", None),
    ("IN_PROCESS", "In progress", None),
    ("UC_DOCS01", "Documents collected", None),
    ("UC_INTV02", "Interview booked", None),
    ("PROCESSED", "Processed", None),
    ("CONVERTED", "Good lead", "S"),
    ("JUNK", "Junk lead", "F"),
    ("UC_NOREPLY", "No reply for 30 days", "F"),
)
PIPELINES = {
    "Bachelor": (
        ("NEW", "Application started", None),
        ("PREPARATION", "Applied", None),
        ("UC_VISA01", "Visa", None),
        ("WON", "Enrolled", "S"),
        ("LOSE", "Withdrew", "F"),
    ),
    "Master": (
        ("NEW", "Profile review", None),
        ("UC_DOCS02", "Documents", None),
        ("UC_INTV03", "Interview", None),
        ("WON", "Enrolled", "S"),
        ("LOSE", "Rejected", "F"),
    ),
}
OTHER_STATUSES = {
    "SOURCE": (("WEB", "Website"), ("CALL", "Call"), ("EMAIL", "E-mail"), ("PARTNER", "Partner"),
               ("OPENLINE", "Open Channel"), ("UC_FAIR01", "Education fair")),
    "HONORIFIC": (("HNR_EN_1", "Mr."), ("HNR_EN_2", "Mrs."), ("HNR_EN_3", "Ms."), ("HNR_EN_4", "Dr.")),
    "CONTACT_TYPE": (("CLIENT", "Student"), ("PARTNER", "Parent"), ("OTHER", "Other")),
    "COMPANY_TYPE": (("CUSTOMER", "Client"), ("PARTNER", "Partner"), ("UC_SCHOOL1", "High school")),
    "INDUSTRY": (("EDUCATION", "Education"), ("IT", "Information technology"), ("OTHER", "Other")),
    "EMPLOYEES": (("EMPLOYEES_1", "fewer than 50"), ("EMPLOYEES_2", "50-250"), ("EMPLOYEES_3", "250-500")),
    "DEAL_TYPE": (("SALE", "Enrolment"), ("SERVICE", "Visa service")),
}  # fmt: skip
USER_FIELD_TYPES = (
    ("string", "Passport number", False, ()),
    ("enumeration", "Program level", False, ("Foundation", "Bachelor", "Master", "PhD")),
    ("enumeration", "Languages", True, ("English", "German", "Italian", "French", "Czech")),
    ("date", "Exam date", False, ()),
    ("datetime", "Interview at", False, ()),
    ("money", "Deposit", False, ()),
    ("file", "Transcript", False, ()),
    ("boolean", "Scholarship", False, ()),
    ("integer", "Siblings", False, ()),
    ("double", "GPA", False, ()),
    ("url", "Portfolio", False, ()),
    ("crm", "Referred by", False, ()),
    ("employee", "Counsellor", False, ()),
)
"""The agency's user fields, one of each type, on every entity."""
MESSENGERS = (("TELEGRAM", "@student{n}"), ("OPENLINE", "imol|telegrambot|3|{n}|7"), ("IMOL", "imol|whatsapp|5|{n}|9"))


def sized(scale: float, kind: str) -> int:
    return max(1, round(FULL_SIZE[kind] * scale))


@dataclass
class AgencyPortal:
    """What was seeded, for tests to check every bit of it comes back."""

    users: dict[str, bool] = field(default_factory=dict)
    """User id -> active."""
    user_fields: dict[str, list[PortalUserField]] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)
    """Entity (lead, contact, company, deal, activity) -> ids in creation order."""
    chat_only_leads: list[str] = field(default_factory=list)
    converted_leads: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)
    """Lead id -> (contact, company, deal) it became."""
    file_ids: list[int] = field(default_factory=list)
    comments: dict[tuple[str, str], int] = field(default_factory=dict)
    """(entity, id) -> how many timeline comments."""


def _moment(when: datetime) -> str:
    """A date or time as the portal answers it: ISO 8601 with the portal's offset (DOCS: crm-deal-get)."""
    return _now_iso(when.timestamp())


def _stamps(created: datetime, *, lead: bool = False) -> dict[str, str]:
    """When a record was made and last touched (a week later), so that a seed is the same every run."""
    touched = _moment(created + timedelta(days=7))
    stamps = {"DATE_CREATE": _moment(created), "DATE_MODIFY": touched}
    return stamps | ({"MOVED_TIME": touched, "LAST_ACTIVITY_TIME": touched} if lead else {})


class _Seeder:
    """Seeds in the order links point: users and fields, companies, contacts, deals, leads (converted
    ones onto deals already there), then activities on all of them."""

    def __init__(self, sim: SimulatedBitrix24, scale: float, seed: int) -> None:
        self.sim = sim
        self.portal = sim.entities
        self.scale = scale
        self.chance = random.Random(seed)  # noqa: S311 - a reproducible portal, not a secret
        self.seeded = AgencyPortal()
        self.active_users: list[str] = []
        self._files_left = sized(scale, "file")
        self.deal_contacts: dict[str, str] = {}
        self.stages: dict[int, list[tuple[str, str | None]]] = {}
        """Pipeline id -> its stages (id, semantics)."""

    # --- structure ---------------------------------------------------------------------------------

    def structure(self) -> None:
        for name, last_name, email, active in USERS:
            user_id = self.portal.add_user(name, last_name, email, active=active)
            self.seeded.users[user_id] = active
            if active:
                self.active_users.append(user_id)
        for status_id, name, semantics in LEAD_STAGES:
            self.portal.add_status("STATUS", status_id, name, semantics=semantics)
        for entity_id, items in OTHER_STATUSES.items():
            for status_id, name in items:
                self.portal.add_status(entity_id, status_id, name)
        self.portal.categories[0]["name"] = "Bachelor"
        for name, stages in PIPELINES.items():
            category_id = 0 if name == "Bachelor" else self.portal.add_category(name)
            entity_id = "DEAL_STAGE" if category_id == 0 else f"DEAL_STAGE_{category_id}"
            prefix = "" if category_id == 0 else f"C{category_id}:"
            for status_id, stage_name, semantics in stages:
                self.portal.add_status(
                    entity_id, prefix + status_id, stage_name, semantics=semantics, category_id=category_id
                )
            self.stages[category_id] = [(prefix + status_id, semantics) for status_id, _, semantics in stages]
        number = 1717000000
        for entity in ENTITY_TYPE_IDS:
            self.seeded.user_fields[entity] = []
            for kind, label, multiple, options in USER_FIELD_TYPES:
                number += 7
                settings: dict[str, Any] = (
                    {"LEAD": "Y", "CONTACT": "Y", "COMPANY": "Y", "DEAL": "N"} if kind == "crm" else {}
                )
                user_field = self.portal.add_user_field(
                    entity, f"UF_CRM_{number}", kind, label, multiple=multiple, options=options, settings=settings
                )
                self.seeded.user_fields[entity].append(user_field)

    # --- values ------------------------------------------------------------------------------------

    def when(self, number: int) -> datetime:
        return EPOCH + timedelta(hours=9 * number, minutes=self.chance.randrange(60))

    def owner(self) -> str:
        """Mostly someone still here; one record in six belongs to someone who left."""
        if self.chance.random() < 1 / 6:
            return self.chance.choice([user for user, active in self.seeded.users.items() if not active])
        return self.chance.choice(self.active_users)

    def new_file(self, name: str) -> int | None:
        if self._files_left <= 0:
            return None
        self._files_left -= 1
        file_id = self.portal.add_file(name, f"%PDF-1.4 {name} #{len(self.seeded.file_ids)}\n".encode())
        self.seeded.file_ids.append(file_id)
        return file_id

    def user_field_values(self, entity: str, owner_id: int, number: int) -> dict[str, Any]:
        """Every user field filled in about two records out of three, in the form the API answers."""
        values: dict[str, Any] = {}
        for user_field in self.seeded.user_fields[entity]:
            if self.chance.random() < 1 / 3:
                values[user_field.name] = [] if user_field.multiple else None
                continue
            values[user_field.name] = self.user_field_value(entity, user_field, owner_id, number)
        return values

    def user_field_value(  # noqa: PLR0911 - one answer per user field type
        self, entity: str, user_field: PortalUserField, owner_id: int, number: int
    ) -> Any:
        chance = self.chance
        match user_field.type:
            case "string":
                return f"U{number:08d}"
            case "enumeration" if user_field.multiple:
                picked = chance.sample(user_field.options, chance.randrange(1, 3))
                return [option_id for option_id, _ in picked]
            case "enumeration":
                return chance.choice(user_field.options)[0]
            case "date":
                return _moment(datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=number % 400))
            case "datetime":
                return _moment(self.when(number) + timedelta(days=3, hours=2))
            case "money":
                return f"{chance.choice((500, 1500, 2500))}|{chance.choice(('EUR', 'USD'))}"
            case "file":
                file_id = self.new_file(f"transcript-{entity}-{owner_id}.pdf") if chance.random() < 0.11 else None
                return self.portal.file_value(entity, owner_id, user_field.name, file_id) if file_id else None
            case "boolean":  # "0/1 as in the old non-universal methods" (bitrix-tools/b24-rest-docs#348)
                return chance.choice(("1", "0"))
            case "integer":
                return str(chance.randrange(0, 4))
            case "double":
                return f"{chance.uniform(2.0, 4.0):.2f}"
            case "url":
                return f"https://portfolio.example/{number}"
            case "crm":
                companies = self.seeded.ids.get("company") or []
                if companies and chance.random() < 0.5:
                    return f"{BINDING_PREFIXES['company']}_{chance.choice(companies)}"
                contacts = self.seeded.ids.get("contact") or []
                return f"{BINDING_PREFIXES['contact']}_{chance.choice(contacts)}" if contacts else None
            case _:  # employee
                return self.owner()

    def person(self, number: int) -> dict[str, Any]:
        chance = self.chance
        first, last = chance.choice(FIRST_NAMES), chance.choice(LAST_NAMES)
        return {
            "NAME": first,
            "LAST_NAME": last,
            "SECOND_NAME": chance.choice(("", "", "Ali", "Nur")),
            "HONORIFIC": chance.choice(("HNR_EN_1", "HNR_EN_2", "HNR_EN_3", "")),
            "BIRTHDATE": _moment(datetime(2003, 1, 1, tzinfo=UTC) + timedelta(days=number % 1500)),
            "POST": chance.choice(("Student", "", "Intern")),
            "ADDRESS": f"{number % 90 + 1} Bağdat Caddesi",
            "ADDRESS_CITY": chance.choice(("İstanbul", "Ankara", "İzmir")),
            "ADDRESS_POSTAL_CODE": f"34{number % 1000:03d}",
            "ADDRESS_COUNTRY": "Türkiye",
            "ADDRESS_COUNTRY_CODE": "TR",
        }

    def multifields(self, number: int) -> dict[str, list[tuple[str, str]]]:
        kind, handle = MESSENGERS[number % len(MESSENGERS)]
        fields = {
            "PHONE": [(f"+90 532 {number % 1000:03d} {number % 100:02d} {number % 97:02d}", "MOBILE")],
            "EMAIL": [(f"student{number}@mail.example", "HOME")],
        }
        if number % 2 == 0:
            fields["IM"] = [(handle.format(n=number), kind)]
        if number % 5 == 0:
            fields["WEB"] = [(f"https://instagram.com/student{number}", "OTHER")]
        if number % 7 == 0:
            fields["PHONE"].append((f"+90 212 555 {number % 100:02d} {number % 89:02d}", "WORK"))
        return fields

    def comments(self, entity: str, record_id: str, created: datetime, count: int) -> None:
        for index in range(count):
            file_id = self.new_file(f"note-{entity}-{record_id}-{index}.pdf") if self.chance.random() < 0.02 else None
            self.portal.add_comment(
                entity,
                record_id,
                f"{self.chance.choice(COMMENTS)} ({entity} {record_id}.{index})",
                created + timedelta(days=index + 1),
                self.owner(),
                (file_id,) if file_id else (),
            )
        if count:
            self.seeded.comments[(entity, record_id)] = count

    # --- records -------------------------------------------------------------------------------------

    def companies(self) -> None:
        for number in range(1, sized(self.scale, "company") + 1):
            values = {
                "TITLE": f"{self.chance.choice(UNIVERSITIES)} partner office {number}",
                "COMPANY_TYPE": self.chance.choice(("CUSTOMER", "PARTNER", "UC_SCHOOL1")),
                "INDUSTRY": self.chance.choice(("EDUCATION", "IT", "OTHER")),
                "EMPLOYEES": "EMPLOYEES_1",
                "CURRENCY_ID": "EUR",
                "REVENUE": f"{number * 1000:.2f}",
                "COMMENTS": "Sends us students every spring." if number % 3 == 0 else "",
                "ASSIGNED_BY_ID": self.owner(),
                "ADDRESS_CITY": "İstanbul",
                **_stamps(self.when(number)),
            }
            company_id = self.portal.add_record("company", values, {"PHONE": [(f"+90 212 444 {number:04d}", "WORK")]})
            self.portal.store_values("company", company_id, self.user_field_values("company", int(company_id), number))
            self.seeded.ids.setdefault("company", []).append(company_id)
            self.comments("company", company_id, self.when(number), self.chance.randrange(0, 2))

    def contacts(self) -> None:
        companies = self.seeded.ids["company"]
        for number in range(1, sized(self.scale, "contact") + 1):
            company_id = self.chance.choice(companies) if number % 3 else None
            values = self.person(number) | {
                "TYPE_ID": self.chance.choice(("CLIENT", "PARTNER", "OTHER")),
                "SOURCE_ID": self.chance.choice(("WEB", "CALL", "PARTNER", "UC_FAIR01")),
                "COMPANY_ID": company_id,
                "ASSIGNED_BY_ID": self.owner(),
                **_stamps(self.when(number)),
            }
            contact_id = self.portal.add_record("contact", values, self.multifields(number))
            self.portal.store_values("contact", contact_id, self.user_field_values("contact", int(contact_id), number))
            self.seeded.ids.setdefault("contact", []).append(contact_id)
            self.comments("contact", contact_id, self.when(number), self.chance.randrange(0, 3))

    def deals(self) -> None:
        contacts, companies = self.seeded.ids["contact"], self.seeded.ids["company"]
        for number in range(1, sized(self.scale, "deal") + 1):
            category_id = 0 if number % 5 < 3 else max(self.stages)
            stage_id, _ = self.chance.choice(self.stages[category_id])
            contact_id = contacts[(number * 7) % len(contacts)]
            values = {
                "TITLE": f"{self.chance.choice(PROGRAMS)} application {number}",
                "TYPE_ID": self.chance.choice(("SALE", "SERVICE")),
                "CATEGORY_ID": str(category_id),
                "STAGE_ID": stage_id,
                "CURRENCY_ID": "EUR",
                "OPPORTUNITY": f"{self.chance.choice((1200, 4500, 9800))}.00",
                "CONTACT_ID": contact_id,
                "CONTACT_IDS": [contact_id],
                "COMPANY_ID": self.chance.choice(companies) if number % 4 == 0 else None,
                "BEGINDATE": _moment(self.when(number)),
                "CLOSEDATE": _moment(self.when(number) + timedelta(days=60)),
                "ASSIGNED_BY_ID": self.owner(),
                "SOURCE_ID": "WEB",
                "COMMENTS": "Parents pay the deposit." if number % 6 == 0 else "",
                **_stamps(self.when(number)),
            }
            deal_id = self.portal.add_record("deal", values)
            self.deal_contacts[deal_id] = contact_id
            self.portal.store_values("deal", deal_id, self.user_field_values("deal", int(deal_id), number))
            self.seeded.ids.setdefault("deal", []).append(deal_id)
            self.comments("deal", deal_id, self.when(number), self.chance.randrange(0, 3))

    def leads(self) -> None:
        total = sized(self.scale, "lead")
        deals = list(self.seeded.ids["deal"])
        converted = min(len(deals), total // 7)
        for number in range(1, total + 1):
            created = self.when(number)
            comments = [
                (f"{self.chance.choice(COMMENTS)} (lead {number}.{index})", created + timedelta(days=index + 1),
                 self.owner(), ())
                for index in range(self.chance.randrange(0, 3))
            ]  # fmt: skip
            if number % 12 == 0:  # an Open Channel lead: a title and a chat handle, nothing else
                kind, handle = MESSENGERS[1 + number % 2]
                values = {"TITLE": f"Telegram chat #{number}", "SOURCE_ID": "OPENLINE"}
                values |= {"ASSIGNED_BY_ID": self.owner(), **_stamps(created, lead=True)}
                lead_id = self.sim.store_lead(values, {"IM": [(handle.format(n=number), kind)]}, comments)
                self.seeded.chat_only_leads.append(lead_id)
            else:
                stage = self.chance.choice([status for status, *_ in LEAD_STAGES if status != "CONVERTED"])
                values = self.person(number) | {
                    "TITLE": f"{self.chance.choice(PROGRAMS)} enquiry",
                    "STATUS_ID": stage,
                    "STATUS_DESCRIPTION": "Waiting for the transcript" if number % 9 == 0 else "",
                    "SOURCE_ID": self.chance.choice(("WEB", "CALL", "EMAIL", "PARTNER", "UC_FAIR01")),
                    "SOURCE_DESCRIPTION": "Spring fair, stand 12" if number % 11 == 0 else "",
                    "COMPANY_TITLE": self.chance.choice(("", "Kadıköy Anadolu Lisesi")),
                    "OPPORTUNITY": f"{self.chance.choice((0, 1500, 3000))}.00",
                    "CURRENCY_ID": self.chance.choice(("EUR", "USD", "TRY")),
                    "COMMENTS": "Prefers WhatsApp." if number % 8 == 0 else "",
                    "UTM_SOURCE": self.chance.choice(("google", "instagram", "")),
                    "ASSIGNED_BY_ID": self.owner(),
                    **_stamps(created, lead=True),
                }
                if converted and number % 7 == 0 and len(self.seeded.converted_leads) < converted:
                    deal_id = deals[len(self.seeded.converted_leads)]
                    deal = self.portal.record("deal", deal_id)
                    values |= {"STATUS_ID": "CONVERTED", "CONTACT_ID": deal["CONTACT_ID"]}
                    values |= {"COMPANY_ID": deal["COMPANY_ID"]}
                lead_id = self.sim.store_lead(values, self.multifields(number), comments)
                if values["STATUS_ID"] == "CONVERTED":
                    deal_id = deals[len(self.seeded.converted_leads)]
                    self.portal.store_values("deal", deal_id, {"LEAD_ID": lead_id})
                    self.portal.store_values("contact", values["CONTACT_ID"], {"LEAD_ID": lead_id})
                    self.seeded.converted_leads[lead_id] = (values["CONTACT_ID"], values["COMPANY_ID"], deal_id)
            if lead_id not in self.seeded.chat_only_leads:
                self.portal.store_values("lead", lead_id, self.user_field_values("lead", int(lead_id), number))
            self.seeded.ids.setdefault("lead", []).append(lead_id)
            if comments:
                self.seeded.comments[("lead", lead_id)] = len(comments)

    def activities(self) -> None:
        owners = [
            (entity, record_id) for entity in ("lead", "contact", "deal") for record_id in self.seeded.ids[entity]
        ]
        types = (("2", "CALL", "Call"), ("1", "MEETING", "Meeting"), ("4", "EMAIL", "E-mail"), ("6", "TASKS", "To-do"))
        for number in range(1, sized(self.scale, "activity") + 1):
            entity, owner_id = owners[(number * 31) % len(owners)]
            type_id, provider, subject = types[number % len(types)]
            start = self.when(number % 2000) + timedelta(days=number % 30)
            file_id = self.new_file(f"activity-{number}.pdf") if type_id == "4" and number % 20 == 0 else None
            responsible = self.owner()
            values = {
                "OWNER_ID": owner_id,
                "OWNER_TYPE_ID": str(ENTITY_TYPE_IDS[entity]),
                "TYPE_ID": type_id,
                "PROVIDER_ID": provider,
                "PROVIDER_TYPE_ID": provider,
                "SUBJECT": f"{subject} #{number}",
                "DESCRIPTION": f"Talked about the {self.chance.choice(PROGRAMS)} intake." if number % 3 else "",
                "DESCRIPTION_TYPE": "1",
                "CREATED": _moment(start - timedelta(days=1)),
                "LAST_UPDATED": _moment(start),
                "START_TIME": _moment(start),
                "END_TIME": _moment(start + timedelta(minutes=30)),
                "DEADLINE": _moment(start + timedelta(minutes=30)),
                "COMPLETED": "Y" if number % 4 else "N",
                "STATUS": "2" if number % 4 else "1",
                "RESPONSIBLE_ID": responsible,
                "PRIORITY": "2",
                "DIRECTION": "0" if type_id in ("1", "6") else str(1 + number % 2),
                "LOCATION": "Office" if type_id == "1" else "",
                "AUTHOR_ID": responsible,
                "EDITOR_ID": responsible,
                "FILES": (file_id,) if file_id else (),
            }
            communications = [
                {"ID": str(number), "TYPE": "PHONE" if type_id == "2" else "EMAIL",
                 "VALUE": f"+90 532 000 {number:04d}" if type_id == "2" else f"student{number}@mail.example",
                 "ENTITY_ID": owner_id, "ENTITY_TYPE_ID": str(ENTITY_TYPE_IDS[entity])}
            ] if type_id in ("2", "4") else []  # fmt: skip
            # A deal's call or meeting shows on its student's contact too (a second binding).
            also = [("contact", self.deal_contacts[owner_id])] if entity == "deal" and number % 2 else []
            self.seeded.ids.setdefault("activity", []).append(self.portal.add_activity(values, communications, also))


def seed_agency_portal(sim: SimulatedBitrix24, *, scale: float = 1.0, seed: int = 23) -> AgencyPortal:
    """Seed the agency's portal into ``sim`` at ``scale`` of its full size; return what was seeded."""
    seeder = _Seeder(sim, scale, seed)
    seeder.structure()
    seeder.companies()
    seeder.contacts()
    seeder.deals()
    seeder.leads()
    seeder.activities()
    return seeder.seeded
