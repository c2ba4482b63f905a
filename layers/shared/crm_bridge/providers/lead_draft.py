"""Provider-neutral description of a lead to write, and the texts that go on its timeline.

Both providers build their API payloads from a :class:`LeadDraft`, so what a lead contains is
decided once, here, whatever the CRM.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from crm_bridge.envelope import json_time
from crm_bridge.field_mapping import FIRST_TOUCH_FIELDS, LAST_TOUCH_FIELDS, LeadSourceKind, MappedField
from crm_bridge.models import Application, MessengerActivity
from crm_bridge.models.attribution import Touch, Touches
from crm_bridge.providers.records import PROVIDER_LABELS, CrmLead, RecordedNote, import_marker

CHANNEL_LABELS = {"telegram": "Telegram", "whatsapp": "WhatsApp", "instagram": "Instagram"}
FIELD_LABELS: dict[MappedField, str] = {
    MappedField.REFERRAL_CODE: "Partner referral code",
    MappedField.USER_TYPE: "Applicant",
    MappedField.PREFERRED_LANGUAGE: "Preferred language",
    MappedField.PROGRAM: "Programme",
    MappedField.UNIVERSITY: "University",
    MappedField.CONSENT: "Privacy consent",
    MappedField.UTM_SOURCE: "UTM source",
    MappedField.UTM_MEDIUM: "UTM medium",
    MappedField.UTM_CAMPAIGN: "UTM campaign",
    MappedField.UTM_TERM: "UTM term",
    MappedField.UTM_CONTENT: "UTM content",
    MappedField.UTM_ID: "UTM id",
    MappedField.GCLID: "Google click id",
    MappedField.GBRAID: "Google app click id (gbraid)",
    MappedField.WBRAID: "Google web click id (wbraid)",
    MappedField.FBCLID: "Facebook click id",
    MappedField.TTCLID: "TikTok click id",
    MappedField.MSCLKID: "Microsoft click id",
    MappedField.YCLID: "Yandex click id",
    MappedField.CTWA_CLID: "WhatsApp click-to-chat id",
    MappedField.LANDING_PAGE: "Landing page",
    MappedField.REFERRER: "Referrer",
    MappedField.FIRST_REFERRAL_CODE: "First touch: referral code",
    MappedField.FIRST_UTM_SOURCE: "First touch: UTM source",
    MappedField.FIRST_UTM_MEDIUM: "First touch: UTM medium",
    MappedField.FIRST_UTM_CAMPAIGN: "First touch: UTM campaign",
    MappedField.FIRST_LANDING_PAGE: "First touch: landing page",
    MappedField.FIRST_REFERRER: "First touch: referrer",
    MappedField.FIRST_TOUCH_AT: "First touch: time",
    MappedField.CONSENT_VERSION: "Privacy notice version",
    MappedField.CONSENT_AT: "Privacy consent given at",
    MappedField.CONSENT_PAGE: "Privacy consent page",
    MappedField.VISITOR_SESSION_ID: "Visitor session",
    MappedField.MESSENGER_CHANNEL: "Messenger",
    MappedField.SOURCE_RECORD: "Copied from",
    MappedField.SOURCE_CREATED_AT: "Created there on",
}
"""How a salesperson reads each mapped field in a lead's description."""
CONTACT_LABELS = {"first_name": "First name", "last_name": "Last name", "phone": "Phone", "email": "E-mail"}
"""The same for the fields every CRM has (the names of :class:`LeadDraft`'s attributes)."""
_MARKER_PREFIX = "crm-bridge operation "


@dataclass(frozen=True)
class LeadDraft:
    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    description: str
    source: LeadSourceKind | None
    """What made the lead; None for a copy of another CRM's lead (its source is in its text)."""
    values: dict[MappedField, str | bool] = field(default_factory=dict)
    """Values of the fields whose CRM attribute the mapping decides."""

    @property
    def title(self) -> str:
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return name or "Website visitor"

    def contacts(self) -> dict[str, str | None]:
        """The fields every CRM has, by the keys of :data:`CONTACT_LABELS`."""
        return {"first_name": self.first_name, "last_name": self.last_name, "phone": self.phone, "email": self.email}


def detail_lines(details: Iterable[tuple[str, object]]) -> list[str]:
    """``Label: value`` lines for the values given (None and "" are not; a boolean is "given" or
    "not given"): how every value that has no field of its own is written into a lead's text."""
    lines = []
    for label, value in details:
        if value is None or value == "":
            continue
        shown = ("given" if value else "not given") if isinstance(value, bool) else value
        lines.append(f"{label}: {shown}")
    return lines


def add_details(text: str, details: Iterable[tuple[str, object]]) -> str:
    """``text`` with the :func:`detail_lines` it does not hold yet, before its operation marker
    when it ends with one (the marker stays the last line)."""
    lines = text.split("\n")
    added = [line for line in detail_lines(details) if line not in lines]
    if not added:
        return text
    end = len(lines) - 1 if lines[-1].startswith(_MARKER_PREFIX) else len(lines)
    return "\n".join([*lines[:end], *added, *lines[end:]])


def moment_text(moment: datetime) -> str:
    """A time as a salesperson reads it in a lead's text: ``2026-12-05 17:43 UTC``."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _touch_values(touches: Touches) -> dict[MappedField, str | bool]:
    """The touches' values that have a field of their own: the last touch under the plain names
    (Bitrix24's native ``UTM_*``), the first touch's core under ``first_*``."""
    values: dict[MappedField, str | bool] = {}
    latest = touches.latest_touch()
    if latest is not None:
        last = latest.present()
        values.update({mapped: last[mapped.value] for mapped in LAST_TOUCH_FIELDS if mapped.value in last})
    if touches.first_touch is not None:
        first = touches.first_touch.present()
        values.update({mapped: first[name] for name, mapped in FIRST_TOUCH_FIELDS.items() if name in first})
    referral_code = touches.referral_code()
    if referral_code is not None:  # the partner to pay, whichever touch carried the code
        values[MappedField.REFERRAL_CODE] = referral_code
    return values


def _touch_line(label: str, touch: Touch) -> str:
    """``First touch: ref=P-1, utm_source=fb; landed on https://…; from https://…; at 2026-12-05 17:43 UTC``."""
    parts = []
    tags = touch.tags()
    if tags:
        parts.append(", ".join(f"{'ref' if name == 'referral_code' else name}={value}" for name, value in tags.items()))
    if touch.landing_page:
        parts.append(f"landed on {touch.landing_page}")
    if touch.referrer:
        parts.append(f"from {touch.referrer}")
    if touch.touched_at:
        parts.append(f"at {moment_text(touch.touched_at)}")
    return f"{label}: " + "; ".join(parts)


def _attribution_lines(touches: Touches) -> list[str]:
    lines = detail_lines([(FIELD_LABELS[MappedField.REFERRAL_CODE], touches.referral_code())])
    return lines + [_touch_line(label, touch) for label, touch in touches.touches()]


def _consent_line(application: Application) -> str | None:
    """What the applicant agreed to, when and where: the evidence KVKK and the GDPR ask for."""
    if not (
        application.consent and (application.consent_version or application.consent_at or application.consent_page)
    ):
        return None  # "Privacy consent: given" says all there is
    line = "Privacy notice accepted"
    if application.consent_version:
        line += f" (version {application.consent_version})"
    if application.consent_at:
        line += f" at {moment_text(application.consent_at)}"
    if application.consent_page:
        line += f" on {application.consent_page}"
    return line + "."


def operation_marker(operation_id: UUID) -> str:
    """The last line of every text crm-bridge writes to a lead: how a retry whose earlier attempt
    reached the CRM, but whose answer was lost, recognises that write instead of repeating it."""
    return f"{_MARKER_PREFIX}{operation_id}"


def application_summary(application: Application, operation_id: UUID) -> str:
    """Everything the applicant told us, readable by a salesperson: nothing is lost even when
    the CRM lacks a custom field for some of it."""
    lines = ["Application form on the website."]
    lines += detail_lines(
        [
            (FIELD_LABELS[MappedField.USER_TYPE], application.user_type),
            (FIELD_LABELS[MappedField.PROGRAM], application.program),
            (FIELD_LABELS[MappedField.UNIVERSITY], application.university),
            (FIELD_LABELS[MappedField.PREFERRED_LANGUAGE], application.preferred_language),
            (CONTACT_LABELS["phone"], application.phone),
            (CONTACT_LABELS["email"], application.email),
            (FIELD_LABELS[MappedField.CONSENT], application.consent),
        ]
    )
    lines += [line for line in (_consent_line(application),) if line]
    lines.extend(_attribution_lines(application))
    if application.message:
        lines.append(f"Message:\n{application.message}")
    lines.append(operation_marker(operation_id))
    return "\n".join(lines)


def closed_lead_line(
    again: str, previous_id: str, converted: bool, contact_id: str | None, account_id: str | None
) -> str:
    """The first line of a lead made because the person's earlier lead is closed: CRM ids only,
    e.g. "Applied again; the earlier lead 17 was converted (contact 5, account 3)."."""
    if not converted:
        return f"{again}; the earlier lead {previous_id} was closed as lost."
    became = [
        f"{kind} {record_id}" for kind, record_id in (("contact", contact_id), ("account", account_id)) if record_id
    ]
    return f"{again}; the earlier lead {previous_id} was converted" + (f" ({', '.join(became)})." if became else ".")


REPEAT_HEADING = (
    "Submitted the application form again. The name, phone and e-mail below are as this submission gave "
    "them; the lead's own were not changed (matching a phone or an e-mail does not show who typed the rest)."
)


def repeat_application_note(application: Application, operation_id: UUID) -> str:
    """A repeat submission on the timeline of the lead it matched: everything it said, its name and
    contacts marked as its own (:meth:`CrmProvider.upsert_lead` writes none of them onto the lead)."""
    name = detail_lines([("Name", application.person_name().full)])
    return "\n".join([REPEAT_HEADING, *name, *application_summary(application, operation_id).split("\n")[1:]])


def activity_note(activity: MessengerActivity, operation_id: UUID | None = None) -> str:
    channel = CHANNEL_LABELS[activity.channel]
    lines = [f'Clicked "message us on {channel}" on the website at {activity.occurred_at:%Y-%m-%d %H:%M} UTC.']
    if activity.page:
        lines.append(f"Page: {activity.page}")
    lines.extend(_attribution_lines(activity))
    lines += detail_lines([(FIELD_LABELS[MappedField.VISITOR_SESSION_ID], activity.session_id)])
    if operation_id is not None:
        lines.append(operation_marker(operation_id))
    return "\n".join(lines)


def draft_from_application(application: Application, operation_id: UUID) -> LeadDraft:
    name = application.person_name()
    values = _touch_values(application)
    for mapped, value in (
        (MappedField.USER_TYPE, application.user_type),
        (MappedField.PREFERRED_LANGUAGE, application.preferred_language),
        (MappedField.PROGRAM, application.program),
        (MappedField.UNIVERSITY, application.university),
        (MappedField.CONSENT_VERSION, application.consent_version),
        (MappedField.CONSENT_PAGE, application.consent_page),
    ):
        if value is not None:
            values[mapped] = str(value)
    if application.consent_at is not None:
        values[MappedField.CONSENT_AT] = json_time(application.consent_at)
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
    values = _touch_values(activity)
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


def _provider_label(provider: str) -> str:
    return PROVIDER_LABELS.get(provider, provider)


def copy_summary(lead: CrmLead, unrecognised: Iterable[str] = ()) -> str:
    """The text of a migration's copy of a lead: where it comes from and when it was made there,
    what the original said, the contacts that are no phone number or e-mail address a CRM can
    match on (kept as typed), and the import marker last."""
    origin = f"Copied from {_provider_label(lead.provider)} lead {lead.record_id}"
    if lead.created_at is not None:
        origin += f", created there on {moment_text(lead.created_at)}"
    lines = [origin + "."]
    if lead.source:
        lines.append(f"Source in {_provider_label(lead.provider)}: {lead.source}")
    if lead.description:
        lines.append(lead.description)
    lines += [f"Contact as typed there (not a valid phone or e-mail): {value}" for value in unrecognised]
    lines.append(import_marker(lead.key))
    return "\n".join(lines)


def copied_note(lead: CrmLead, note: RecordedNote) -> str:
    """A note of the original lead, as a note on its copy: who wrote it where and when, then its text."""
    return copied_comment(lead.provider, lead.key, note)


def copied_comment(provider: str, source_key: str, note: RecordedNote, author: str | None = None) -> str:
    """A comment of the record ``source_key`` as a note on its copy: where and when it was written (and
    by whom: a note's own author and date are the API user's and the moment of the copy), its text,
    and the import marker that lets a rerun find it."""
    heading = f"{_provider_label(provider)} comment"
    if note.created_at is not None:
        heading += f" of {moment_text(note.created_at)}"
    if author:
        heading += f" by {author}"
    return f"{heading}:\n{note.text}\n{import_marker(source_key, note.note_id)}"


def draft_from_copy(lead: CrmLead, phone: str | None, email: str | None, unrecognised: Iterable[str]) -> LeadDraft:
    """Another CRM's lead as a draft for this one: its mapped values, where it came from."""
    values = dict(lead.values)
    values[MappedField.SOURCE_RECORD] = lead.key
    if lead.created_at is not None:
        values[MappedField.SOURCE_CREATED_AT] = json_time(lead.created_at)
    return LeadDraft(
        first_name=lead.first_name,
        last_name=lead.last_name
        or (None if lead.first_name else f"{_provider_label(lead.provider)} lead {lead.record_id}"),
        phone=phone,
        email=email,
        description=copy_summary(lead, unrecognised),
        source=None,
        values=values,
    )
