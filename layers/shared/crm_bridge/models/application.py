"""An application-form submission: the richest event, always a lead."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from crm_bridge.models.attribution import Touches
from crm_bridge.models.fields import (
    ConsentVersion,
    Email,
    LongText,
    MediumText,
    OccurredAt,
    PageUrl,
    Phone,
    ShortText,
)
from crm_bridge.models.messenger import SessionId


class UserType(StrEnum):
    STUDENT = "student"
    PARENT = "parent"
    OTHER = "other"


LanguageCode = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z]{2,3}(-[a-z]{2})?$")
]


class PersonName(BaseModel):
    """First and last name as a CRM wants them, whatever the form asked for."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    first_name: str | None
    last_name: str | None

    @property
    def full(self) -> str | None:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or None


class Application(Touches):
    """What the application form sends. At least a name and one way to reach the person."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid", str_max_length=20_000)

    name: ShortText = Field(default=None, description="Full name, when the form has a single name field")
    first_name: ShortText = None
    last_name: ShortText = None
    phone: Phone = Field(default=None, description="Any format; stored as E.164")
    email: Email = None
    user_type: UserType | None = None
    preferred_language: LanguageCode | None = Field(default=None, description="ISO 639 code, e.g. en, ru, tr")
    program: MediumText = Field(default=None, description="Programme or field of study of interest")
    university: MediumText = Field(default=None, description="University of interest")
    message: LongText = None
    consent: bool = Field(default=False, description="The applicant accepted the privacy notice")
    consent_version: ConsentVersion | None = Field(
        default=None, description="Which privacy notice was accepted, as the site names it (e.g. kvkk-2026-03)"
    )
    consent_at: OccurredAt | None = Field(default=None, description="When it was accepted (ISO 8601)")
    consent_page: PageUrl | None = Field(default=None, description="The page the notice was accepted on")
    session_id: SessionId | None = Field(
        default=None, description="The visitor_session cookie: later messenger clicks of this visitor land on this lead"
    )

    @model_validator(mode="after")
    def _reachable_and_named(self) -> Application:
        if not (self.name or self.first_name or self.last_name):
            raise ValueError("give a name: either 'name' or 'first_name'/'last_name'")
        if not (self.phone or self.email):
            raise ValueError("give a way to reach the applicant: 'phone' or 'email'")
        if not self.consent and (self.consent_version or self.consent_at or self.consent_page):
            raise ValueError("consent_version, consent_at and consent_page describe a consent: send consent true")
        return self

    def person_name(self) -> PersonName:
        """Split a single full name: the last word is the last name (``Ayşe Nur Yilmaz``)."""
        if self.first_name or self.last_name:
            return PersonName(first_name=self.first_name, last_name=self.last_name)
        first, _, last = (self.name or "").rpartition(" ")
        return PersonName(first_name=first or last, last_name=last if first else None)
