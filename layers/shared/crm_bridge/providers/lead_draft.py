"""Provider-neutral description of a lead to write, and the texts that go on its timeline.

Both providers build their API payloads from a :class:`LeadDraft`, so what a lead contains is
decided once, here, whatever the CRM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from crm_bridge.field_mapping import LeadSourceKind, MappedField
from crm_bridge.models import Application, Attribution, MessengerActivity

CHANNEL_LABELS = {"telegram": "Telegram", "whatsapp": "WhatsApp", "instagram": "Instagram"}


@dataclass(frozen=True)
class LeadDraft:
    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    description: str
    source: LeadSourceKind
    values: dict[MappedField, str | bool] = field(default_factory=dict)
    """Values of the fields whose CRM attribute the mapping decides."""

    @property
    def title(self) -> str:
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return name or "Website visitor"


def _attribution_values(attribution: Attribution) -> dict[MappedField, str | bool]:
    return {MappedField(name): value for name, value in attribution.present().items()}


def _attribution_lines(attribution: Attribution) -> list[str]:
    lines = []
    if attribution.referral_code:
        lines.append(f"Partner referral code: {attribution.referral_code}")
    tags = [f"{name}={value}" for name, value in attribution.present().items() if name != "referral_code"]
    if tags:
        lines.append("Tracking: " + ", ".join(tags))
    return lines


def operation_marker(operation_id: UUID) -> str:
    """The last line of every text crm-bridge writes to a lead: how a retry whose earlier attempt
    reached the CRM, but whose answer was lost, recognises that write instead of repeating it."""
    return f"crm-bridge operation {operation_id}"


def application_summary(application: Application, operation_id: UUID) -> str:
    """Everything the applicant told us, readable by a salesperson: nothing is lost even when
    the CRM lacks a custom field for some of it."""
    lines = ["Application form on the website."]
    for label, value in (
        ("Applicant", application.user_type),
        ("Programme", application.program),
        ("University", application.university),
        ("Preferred language", application.preferred_language),
        ("Phone", application.phone),
        ("E-mail", application.email),
    ):
        if value:
            lines.append(f"{label}: {value}")
    lines.append(f"Privacy consent: {'given' if application.consent else 'not given'}")
    lines.extend(_attribution_lines(application.attribution))
    if application.message:
        lines.append(f"Message:\n{application.message}")
    lines.append(operation_marker(operation_id))
    return "\n".join(lines)


def repeat_application_note(application: Application, operation_id: UUID) -> str:
    return "Submitted the application form again.\n" + application_summary(application, operation_id).split("\n", 1)[1]


def activity_note(activity: MessengerActivity, operation_id: UUID | None = None) -> str:
    channel = CHANNEL_LABELS[activity.channel]
    lines = [f'Clicked "message us on {channel}" on the website at {activity.occurred_at:%Y-%m-%d %H:%M} UTC.']
    if activity.page:
        lines.append(f"Page: {activity.page}")
    lines.extend(_attribution_lines(activity.attribution))
    lines.append(f"Visitor session: {activity.session_id}")
    if operation_id is not None:
        lines.append(operation_marker(operation_id))
    return "\n".join(lines)


def draft_from_application(application: Application, operation_id: UUID) -> LeadDraft:
    name = application.person_name()
    values: dict[MappedField, str | bool] = _attribution_values(application.attribution)
    for mapped, value in (
        (MappedField.USER_TYPE, application.user_type),
        (MappedField.PREFERRED_LANGUAGE, application.preferred_language),
        (MappedField.PROGRAM, application.program),
        (MappedField.UNIVERSITY, application.university),
    ):
        if value is not None:
            values[mapped] = str(value)
    values[MappedField.CONSENT] = application.consent
    return LeadDraft(
        first_name=name.first_name,
        last_name=name.last_name,
        phone=application.phone,
        email=application.email,
        description=application_summary(application, operation_id),
        source=LeadSourceKind.APPLICATION,
        values=values,
    )


def draft_from_activity(activity: MessengerActivity, operation_id: UUID | None = None) -> LeadDraft:
    """A minimal lead for an anonymous visitor: no name, no contact, only where they came from."""
    channel = CHANNEL_LABELS[activity.channel]
    values = _attribution_values(activity.attribution)
    values[MappedField.VISITOR_SESSION_ID] = activity.session_id
    values[MappedField.MESSENGER_CHANNEL] = activity.channel.value
    return LeadDraft(
        first_name=None,
        last_name=f"{channel} visitor {activity.session_id[:8]}",
        phone=None,
        email=None,
        description=activity_note(activity, operation_id),
        source=LeadSourceKind.MESSENGER,
        values=values,
    )


def is_empty(value: object) -> bool:
    return value is None or value in ("", [], {})


def fill_empty(existing: dict[str, object], desired: dict[str, object], *, keep: frozenset[str]) -> dict[str, object]:
    """The part of ``desired`` that only fills attributes ``existing`` lacks (``keep``: never touch)."""
    return {
        key: value
        for key, value in desired.items()
        if key not in keep and not is_empty(value) and is_empty(existing.get(key))
    }
