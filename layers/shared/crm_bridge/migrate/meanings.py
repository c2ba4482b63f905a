"""What the portal's standard fields mean in EspoCRM: the knowledge :mod:`crm_bridge.migrate.plan` places by.

Bitrix24's fields are those its documentation lists (b24restdocs ``api-reference/crm/{leads,contacts,
companies,deals}/crm-*-fields.md`` and ``timeline/activities/activity-base/crm-activity-fields.md``);
EspoCRM's are the stock ``entityDefs`` of 8.4.2 (``application/Espo/Modules/Crm/Resources/metadata``).
A field named here as ``Entity.attribute`` is held by the other side of a link (a contact's lead is
the lead's ``createdContact``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Meaning:
    """Where a standard field goes: EspoCRM attributes of the same meaning (or of a custom field to create)."""

    attributes: tuple[str, ...]
    note: str = ""
    options_of: str = ""
    """``Entity.attribute`` whose options a list value takes, when not the attribute itself
    (``Opportunity.leadSource`` takes ``Lead.source``'s)."""
    create: tuple[str, str, str] | None = None
    """(name, EspoCRM type, label) of the custom field that holds it, where EspoCRM has none."""


NotMoved = str
"""The reason a field is not moved."""

NOT_MOVED: Mapping[str, NotMoved] = {
    "DATE_MODIFY": "EspoCRM keeps its own modification time (modifiedAt): the move is the latest change",
    "MODIFY_BY_ID": "EspoCRM keeps its own last editor (modifiedBy): the move is the latest change",
    "LAST_UPDATED": "EspoCRM keeps its own modification time (modifiedAt): the move is the latest change",
    "EDITOR_ID": "EspoCRM keeps its own last editor (modifiedBy): the move is the latest change",
    "MOVED_BY_ID": "who last moved the stage: EspoCRM's stream records stage changes from the move on",
    "MOVED_TIME": "when the stage last changed: EspoCRM's stream records stage changes from the move on",
    "HAS_PHONE": "derived from PHONE, which moves",
    "HAS_EMAIL": "derived from EMAIL, which moves",
    "HAS_IMOL": "derived from IM (an Open Channel chat), which moves",
    "STATUS_SEMANTIC_ID": "derived from the status, whose meaning its EspoCRM option keeps",
    "STAGE_SEMANTIC_ID": "derived from the stage, whose meaning its EspoCRM option keeps",
    "CLOSED": "derived from the stage, whose meaning its EspoCRM option keeps",
    "IS_NEW": "derived from the stage, whose meaning its EspoCRM option keeps",
    "IS_RETURN_CUSTOMER": "derived: Bitrix24 sets it when the client already had a lead or deal, which move",
    "LAST_ACTIVITY_TIME": "derived from the activities, which move",
    "LAST_ACTIVITY_BY": "derived from the activities, which move",
    "LAST_COMMUNICATION_TIME": "derived from the activities, which move",
    "ADDRESS_LOC_ADDR_ID": "the id of Bitrix24's location record of the address; the address itself moves",
    "REG_ADDRESS_LOC_ADDR_ID": "the id of Bitrix24's location record of the address; the address itself moves",
    "IS_MANUAL_OPPORTUNITY": "whether the amount was typed or summed from product rows; the amount moves",
    "OPENED": "Bitrix24's 'available to everyone' flag: EspoCRM grants access by roles and teams",
    "EXPORT": "Bitrix24's flag for its own contact export, which EspoCRM has no use for",
    "ORIGIN_VERSION": "the record's version in the external system of ORIGINATOR_ID, for that system's sync",
    "QUOTE_ID": "estimates (quotes) are not part of the move, which takes leads, contacts, companies, "
    "deals and activities",
    "LOCATION_ID": "a delivery location of Bitrix24's online store (sale module), which the CRM does not use",
    "PROVIDER_ID": "which Bitrix24 module drew the activity: the EspoCRM entity (by TYPE_ID) replaces it",
    "PROVIDER_TYPE_ID": "which Bitrix24 module drew the activity: the EspoCRM entity (by TYPE_ID) replaces it",
    "PROVIDER_GROUP_ID": "which Bitrix24 connector drew the activity: the EspoCRM entity (by TYPE_ID) replaces it",
    "ASSOCIATED_ENTITY_ID": "the id of the module's own record behind the activity, internal to Bitrix24",
    "DEADLINE": "derived (Bitrix24's documentation): START_TIME for calls and meetings, END_TIME for tasks",
    "NOTIFY_TYPE": "a reminder's unit: reminders are not recreated, past activities would notify again",
    "NOTIFY_VALUE": "a reminder's offset: reminders are not recreated, past activities would notify again",
    "SETTINGS": "the activity module's internal settings",
    "PROVIDER_PARAMS": "the activity module's internal parameters",
    "PROVIDER_DATA": "the activity module's internal data",
    "RESULT_STATUS": "internal to Bitrix24's activity engine (listed, not described, by its documentation)",
    "RESULT_STREAM": "internal to Bitrix24's activity engine (listed, not described, by its documentation)",
    "RESULT_SOURCE_ID": "internal to Bitrix24's activity engine (listed, not described, by its documentation)",
    "RESULT_MARK": "internal to Bitrix24's activity engine (listed, not described, by its documentation)",
    "RESULT_VALUE": "internal to Bitrix24's activity engine (listed, not described, by its documentation)",
    "RESULT_SUM": "internal to Bitrix24's activity engine (listed, not described, by its documentation)",
    "RESULT_CURRENCY_ID": "internal to Bitrix24's activity engine (listed, not described, by its documentation)",
    "AUTOCOMPLETE_RULE": "a Bitrix24 automation rule that completes the activity",
    "IS_INCOMING_CHANNEL": "derived from DIRECTION",
}
"""System fields that are not data, with the reason (the plan names them, it never drops them silently)."""

_PHONE_KINDS = {"WORK": "Office", "MOBILE": "Mobile", "HOME": "Home", "FAX": "Fax"}
_PHONE_TYPE_LISTS = {
    "Lead": ("Mobile", "Office", "Home", "Fax", "Other"),
    "Contact": ("Mobile", "Office", "Home", "Fax", "Other"),
    "Account": ("Office", "Mobile", "Fax", "Other"),
}
"""Each entity's ``phoneNumber.typeList`` in EspoCRM 8.4.2 (an account's has no Home)."""
PHONE_TYPES: Mapping[str, Mapping[str, str]] = {
    entity: {
        kind: _PHONE_KINDS[kind] if _PHONE_KINDS.get(kind) in type_list else "Other"
        for kind in ("WORK", "MOBILE", "HOME", "FAX", "PAGER", "MAILING", "OTHER")
    }
    for entity, type_list in _PHONE_TYPE_LISTS.items()
}
"""Bitrix24's phone VALUE_TYPE (``data-types.md#crm_multifield``) → EspoCRM's phone type, by entity."""

MESSENGERS: Mapping[str, str] = {
    "TELEGRAM": "Telegram",
    "VIBER": "Viber",
    "VK": "VK",
    "SKYPE": "Skype",
    "BITRIX24": "Bitrix24",
    "OPENLINE": "Open Channel",
    "IMOL": "Open Channel chat",
    "ICQ": "ICQ",
    "MSN": "MSN",
    "JABBER": "Jabber",
    "OTHER": "Other",
}
"""The IM multi-field's VALUE_TYPEs (b24restdocs ``api-reference/crm/data-types.md#crm_multifield``)."""

ACTIVITY_ENUMS: Mapping[str, tuple[str, ...]] = {
    "crm_enum_activitypriority": ("Low", "Medium", "High"),
    "crm_enum_activitystatus": ("Pending", "Completed", "Completed automatically"),
    "crm_enum_activitydirection": ("Incoming", "Outgoing"),
}
"""Labels of the activity enumerations (``data-types.md#activity-enums``), for a custom field holding one."""

LEAD_STATUSES: Mapping[str, str] = {"NEW": "New", "IN_PROCESS": "In Process", "CONVERTED": "Converted", "JUNK": "Dead"}
"""Bitrix24's stock lead statuses → EspoCRM's stock ``Lead.status`` of the same meaning. ``PROCESSED``
(worked on, still open) has none: EspoCRM's ``Assigned`` means "has an owner, not yet worked on"."""

SOURCES: Mapping[str, str] = {
    "CALL": "Call",
    "EMAIL": "Email",
    "WEB": "Web Site",
    "PARTNER": "Partner",
    "OTHER": "Other",
}
"""Bitrix24's stock sources → EspoCRM's stock ``Lead.source`` of the same meaning; the others by their label."""

LONG_TEXTS = frozenset({"SOURCE_DESCRIPTION", "STATUS_DESCRIPTION", "ADDITIONAL_INFO", "BANKING_DETAILS"})
"""Standard strings that hold prose: a custom text, not a varchar (EspoCRM's default maxLength 100)."""


def _address(prefix: str, target: str) -> dict[str, Meaning]:
    """Bitrix24's address parts (``ADDRESS``, ``ADDRESS_CITY``...) → EspoCRM's ``address`` parts."""
    return {
        f"{prefix}": Meaning((f"{target}Street",), "the street's first line"),
        f"{prefix}_2": Meaning((f"{target}Street",), "the street's second line"),
        f"{prefix}_CITY": Meaning((f"{target}City",)),
        f"{prefix}_POSTAL_CODE": Meaning((f"{target}PostalCode",)),
        f"{prefix}_PROVINCE": Meaning((f"{target}State",)),
        f"{prefix}_REGION": Meaning((f"{target}State",), "after the province: EspoCRM has no region"),
        f"{prefix}_COUNTRY": Meaning((f"{target}Country",)),
        f"{prefix}_COUNTRY_CODE": Meaning((f"{target}Country",), "when the country's name is empty"),
    }


def _phone(entity: str) -> Meaning:
    types = ", ".join(f"{kind}→{to}" for kind, to in PHONE_TYPES[entity].items())
    return Meaning(("phoneNumber",), f"every number, typed: {types}")


_EMAIL = Meaning(("emailAddress",), "every address; EspoCRM's addresses have no kind (WORK, HOME...)")
_WEBSITE = Meaning(("website",), "the first address; further ones to the description")
_COMMON: dict[str, Meaning] = {
    "ASSIGNED_BY_ID": Meaning(("assignedUser",), "the paired EspoCRM user (see Users)"),
    "COMMENTS": Meaning(("description",)),
}
_PERSON: dict[str, Meaning] = {
    "HONORIFIC": Meaning(("salutationName",), "options by label"),
    "NAME": Meaning(("firstName",)),
    "LAST_NAME": Meaning(("lastName",)),
    "EMAIL": _EMAIL,
    **_address("ADDRESS", "address"),
}

STANDARD: Mapping[str, Mapping[str, Meaning | NotMoved]] = {
    "Lead": {
        **_COMMON,
        **_PERSON,
        "PHONE": _phone("Lead"),
        "WEB": _WEBSITE,
        "POST": Meaning(("title",)),
        "COMPANY_TITLE": Meaning(("accountName",)),
        "SOURCE_ID": Meaning(("source",), "options by label"),
        "STATUS_ID": Meaning(("status",), "by the status table below"),
        "OPPORTUNITY": Meaning(("opportunityAmount",)),
        "CURRENCY_ID": Meaning(("opportunityAmountCurrency",)),
        "COMPANY_ID": Meaning(("createdAccount",), "the company the lead became or belongs to"),
        "CONTACT_ID": Meaning(("createdContact",), "the contact the lead became or belongs to"),
        "CONTACT_IDS": Meaning(("createdContact",), "the first (EspoCRM links one); further ones to the description"),
    },
    "Contact": {
        **_COMMON,
        **_PERSON,
        "PHONE": _phone("Contact"),
        "COMPANY_ID": Meaning(("account",)),
        "COMPANY_IDS": Meaning(("accounts",)),
        "WEB": Meaning(("cWeb",), "every address", create=("cWeb", "urlMultiple", "Website")),
        "LEAD_ID": Meaning(("Lead.createdContact",), "linked from the lead it was converted from"),
    },
    "Account": {
        **_COMMON,
        "TITLE": Meaning(("name",)),
        "COMPANY_TYPE": Meaning(("type",), "options by label"),
        "INDUSTRY": Meaning(("industry",), "options by label"),
        "PHONE": _phone("Account"),
        "EMAIL": _EMAIL,
        "WEB": _WEBSITE,
        **_address("ADDRESS", "billingAddress"),
        **{
            name: Meaning(meaning.attributes, meaning.note, create=("cRegAddress", "address", "Legal Address"))
            for name, meaning in _address("REG_ADDRESS", "cRegAddress").items()
        },
        "REVENUE": Meaning(("cRevenue",), create=("cRevenue", "currency", "Annual Revenue")),
        "CURRENCY_ID": Meaning(("cRevenueCurrency",), create=("cRevenue", "currency", "Annual Revenue")),
        "CONTACT_ID": Meaning(("Contact.accounts",), "linked from each contact's accounts"),
        "LEAD_ID": Meaning(("Lead.createdAccount",), "linked from the lead it was converted from"),
    },
    "Opportunity": {
        **_COMMON,
        "TITLE": Meaning(("name",)),
        "STAGE_ID": Meaning(("stage",), "by the stage table below"),
        "PROBABILITY": Meaning(("probability",)),
        "OPPORTUNITY": Meaning(("amount",)),
        "CURRENCY_ID": Meaning(("amountCurrency",)),
        "COMPANY_ID": Meaning(("account",)),
        "CONTACT_ID": Meaning(("contact",)),
        "CONTACT_IDS": Meaning(("contacts",)),
        "CLOSEDATE": Meaning(("closeDate",)),
        "SOURCE_ID": Meaning(("leadSource",), "options by label", options_of="Lead.source"),
        "LEAD_ID": Meaning(("Lead.createdOpportunity",), "linked from the lead it was converted from"),
    },
}
"""Standard fields of company, contact, deal and lead with an EspoCRM field of the same meaning.
Not here, so placed as custom fields of their type: TITLE of a lead (EspoCRM's ``title`` is the
position), SECOND_NAME and BIRTHDATE (no stock field), a contact's POST (EspoCRM's ``Contact.title``
is not stored on the contact but as its role at its account, lost without one)."""

_ACTIVITY: dict[str, Meaning | NotMoved] = {
    "SUBJECT": Meaning(("name",)),
    "RESPONSIBLE_ID": Meaning(("assignedUser",), "the paired EspoCRM user (see Users)"),
    "TYPE_ID": Meaning((), "chooses the EspoCRM entity: 1 Meeting, 2 Call, 3 and 6 Task, 4 Email"),
    "OWNER_ID": Meaning(("parent",), "the record the activity belongs to"),
    "OWNER_TYPE_ID": Meaning(("parent",), "the kind of the record the activity belongs to"),
    "BINDINGS": Meaning(
        ("parent", "description"), "the owner; further records it is bound to named in the description"
    ),
    "DESCRIPTION": Meaning(("description",)),
    "DESCRIPTION_TYPE": Meaning(("description",), "how DESCRIPTION is read: plain text, BB codes or HTML"),
    "START_TIME": Meaning(("dateStart",)),
    "END_TIME": Meaning(("dateEnd",)),
}
_DIRECTIONLESS = "Bitrix24 gives a direction to calls and e-mails only (data-types.md#activity-enums)"
_PEOPLE = Meaning(("contacts", "leads"), "the people it was with: its contacts and leads")
_PEOPLE_BOUND = Meaning(
    ("parent", "contacts", "leads", "description"),
    "the owner; contacts and leads it is bound to among its people, other records named in the description",
)
_HELD = "Held when completed, else Planned"

ACTIVITY_STANDARD: Mapping[str, Mapping[str, Meaning | NotMoved]] = {
    "Call": {
        **_ACTIVITY,
        "COMPLETED": Meaning(("status",), _HELD),
        "STATUS": Meaning(("status",), _HELD),
        "DIRECTION": Meaning(("direction",), "1 Inbound, 2 Outbound"),
        "COMMUNICATIONS": _PEOPLE,
        "BINDINGS": _PEOPLE_BOUND,
    },
    "Meeting": {
        **_ACTIVITY,
        "COMPLETED": Meaning(("status",), _HELD),
        "STATUS": Meaning(("status",), _HELD),
        "DIRECTION": _DIRECTIONLESS,
        "COMMUNICATIONS": _PEOPLE,
        "BINDINGS": _PEOPLE_BOUND,
    },
    "Task": {
        **_ACTIVITY,
        "END_TIME": Meaning(("dateEnd",), "the task's deadline"),
        "COMPLETED": Meaning(("status",), "Completed when completed, else Not Started"),
        "STATUS": Meaning(("status",), "Completed when completed, else Not Started"),
        "PRIORITY": Meaning(("priority",), "1 Low, 2 Normal, 3 High"),
        "DIRECTION": _DIRECTIONLESS,
        "COMMUNICATIONS": Meaning(("parent",), "the person the task is about: its parent when it has none"),
        "FILES": Meaning(("attachments",)),
        "WEBDAV_ELEMENTS": Meaning(("attachments",)),
    },
    "Email": {
        **_ACTIVITY,
        "DESCRIPTION": Meaning(("body",)),
        "BINDINGS": Meaning(("parent", "body"), "the owner; further records it is bound to named in the body"),
        "DESCRIPTION_TYPE": Meaning(("isHtml",), "HTML or plain text (BB codes as text)"),
        "START_TIME": Meaning(("dateSent",)),
        "END_TIME": Meaning(("dateSent",), "when START_TIME is empty"),
        "COMPLETED": Meaning(("status",), "Archived: a moved e-mail is a record of one sent or received"),
        "STATUS": Meaning(("status",), "Archived: a moved e-mail is a record of one sent or received"),
        "DIRECTION": Meaning(("fromEmailAddress", "toEmailAddresses"), "incoming: from the contact; outgoing: to it"),
        "COMMUNICATIONS": Meaning(("toEmailAddresses", "fromEmailAddress"), "the other party's addresses"),
        "FILES": Meaning(("attachments",)),
        "WEBDAV_ELEMENTS": Meaning(("attachments",)),
    },
}
"""An activity's standard fields, by the EspoCRM entity its TYPE_ID sends it to."""
