"""The rest of a real Bitrix24 portal around :class:`SimulatedBitrix24`'s leads: contacts, companies,
deals in pipelines, activities, statuses, users, typed user fields and files.

Why: moving a whole portal (issue 23) has to cope with what a portal holds beyond leads, in the
shapes its REST API gives them: list fields as option ids, files as links to fetch, multi-fields only
when named, stages per pipeline. One :class:`PortalEntities` lives in each simulator
(``sim.entities``) and its methods join the simulator's dispatch, so the portal stays one server
(one leaky bucket, one ``batch``). Seeding is direct (``add_*``), not over HTTP.

Sources as in :mod:`tests.simulators.bitrix24` ("DOCS: path" is ``bitrix24/b24restdocs``); what
is documented and what assumed is listed in ``tests/simulators/README.md``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from tests.simulators.bitrix24 import (
    MULTIFIELDS,
    _ApiError,
    _Comment,
    _legacy,
    _now_iso,
    _php_intval,
    _resolve_array_param,
    _resolve_entity_id,
    _user_field_descriptor,
    communication_flags,
    filter_matches,
    list_page,
    list_params,
    native_descriptor,
    selected_names,
    sorted_rows,
)

if TYPE_CHECKING:
    from tests.simulators.bitrix24 import SimulatedBitrix24

ENTITY_TYPE_IDS: Mapping[str, int] = {"lead": 1, "deal": 2, "contact": 3, "company": 4}
"""CRM object type ids (DOCS: crm/data-types, object_type; crm.enum.ownertype)."""
BINDING_PREFIXES: Mapping[str, str] = {"lead": "L", "contact": "C", "company": "CO", "deal": "D"}
"""How a ``crm`` user field allowing several object types names a record: ``C_5``, ``CO_3``
(the same prefixes DOCS: calendar-event-add ``crm_fields`` and bizproc-task-complete use)."""
FIRST_IDS: Mapping[str, int] = {"contact": 1, "company": 1, "deal": 1}
FIRST_ACTIVITY_ID = 1
FIRST_FILE_ID = 5001
FIRST_USER_FIELD_ID = 6001
LEGACY_USER_FIELD_ID = 5801
"""Ids of the live flow's lead fields (``DEFAULT_USER_FIELDS``), created before the agency's typed ones."""
FIRST_OPTION_ID = 61
_FILE_PATHS = re.compile(
    r"^/bitrix/components/bitrix/crm\.(?:lead|contact|company|deal)\.show/show_file\.php$"
    r"|^/bitrix/tools/crm_show_file\.php$"
    r"|^/disk/downloadFile/(?P<disk>\d+)/$"
)

# Native fields of contacts, companies and deals: (name, type, read-only, title, extra), in the order and
# with the titles crm.*.fields answers (DOCS: crm/contacts/crm-contact-fields, crm/companies/
# crm-company-fields, crm/deals/crm-deal-fields, response examples). Multi-fields come last.
_Descriptor = tuple[str, str, bool, str, dict[str, Any]]
_ADDRESS: tuple[_Descriptor, ...] = (
    ("ADDRESS", "string", False, "Address", {}),
    ("ADDRESS_2", "string", False, "Address (Line 2)", {}),
    ("ADDRESS_CITY", "string", False, "City", {}),
    ("ADDRESS_POSTAL_CODE", "string", False, "Postal Code", {}),
    ("ADDRESS_REGION", "string", False, "Region", {}),
    ("ADDRESS_PROVINCE", "string", False, "Province", {}),
    ("ADDRESS_COUNTRY", "string", False, "Country", {}),
    ("ADDRESS_COUNTRY_CODE", "string", False, "Country Code", {}),
)
_AUDIT: tuple[_Descriptor, ...] = (
    ("ASSIGNED_BY_ID", "user", False, "Responsible Person", {}),
    ("CREATED_BY_ID", "user", True, "Created By", {}),
    ("MODIFY_BY_ID", "user", True, "Modified By", {}),
    ("DATE_CREATE", "datetime", True, "Creation Date", {}),
    ("DATE_MODIFY", "datetime", True, "Modification Date", {}),
)
_UTM: tuple[_Descriptor, ...] = (
    ("ORIGINATOR_ID", "string", False, "External Source", {}),
    ("ORIGIN_ID", "string", False, "Identifier in External Source", {}),
    ("UTM_SOURCE", "string", False, "Advertising System", {}),
    ("UTM_MEDIUM", "string", False, "Traffic Type", {}),
    ("UTM_CAMPAIGN", "string", False, "Campaign Identifier", {}),
    ("UTM_CONTENT", "string", False, "Campaign Content", {}),
    ("UTM_TERM", "string", False, "Campaign Search Condition", {}),
)
_MULTIFIELD_DESCRIPTORS: tuple[_Descriptor, ...] = (
    ("PHONE", "crm_multifield", False, "Phone", {"isMultiple": True}),
    ("EMAIL", "crm_multifield", False, "E-mail", {"isMultiple": True}),
    ("WEB", "crm_multifield", False, "Website", {"isMultiple": True}),
    ("IM", "crm_multifield", False, "Messenger", {"isMultiple": True}),
    ("LINK", "crm_multifield", False, "LINK", {"isMultiple": True}),
)
NATIVE_FIELDS: Mapping[str, tuple[_Descriptor, ...]] = {
    "contact": (
        ("ID", "integer", True, "ID", {}),
        ("HONORIFIC", "crm_status", False, "Salutation", {"statusType": "HONORIFIC"}),
        ("NAME", "string", False, "First Name", {}),
        ("SECOND_NAME", "string", False, "Middle Name", {}),
        ("LAST_NAME", "string", False, "Last Name", {}),
        ("PHOTO", "file", False, "Photo", {}),
        ("BIRTHDATE", "date", False, "Birthdate", {}),
        ("TYPE_ID", "crm_status", False, "Contact Type", {"statusType": "CONTACT_TYPE"}),
        ("SOURCE_ID", "crm_status", False, "Source", {"statusType": "SOURCE"}),
        ("SOURCE_DESCRIPTION", "string", False, "Additional Source Information", {}),
        ("POST", "string", False, "Position", {}),
        *_ADDRESS,
        ("COMMENTS", "string", False, "Comment", {}),
        ("OPENED", "char", False, "Available to All", {}),
        ("EXPORT", "char", False, "Participates in Contact Export", {}),
        ("HAS_PHONE", "char", True, "Phone Set", {}),
        ("HAS_EMAIL", "char", True, "E-mail Set", {}),
        ("HAS_IMOL", "char", True, "Open Line Set", {}),
        *_AUDIT,
        ("COMPANY_ID", "crm_company", False, "Company", {"isDeprecated": True}),
        ("COMPANY_IDS", "crm_company", False, "COMPANY_IDS", {"isMultiple": True}),
        ("LEAD_ID", "crm_lead", True, "Lead", {"settings": {"parentEntityTypeId": 1}}),
        *_UTM,
        *_MULTIFIELD_DESCRIPTORS,
    ),
    "company": (
        ("ID", "integer", True, "ID", {}),
        ("TITLE", "string", False, "Company Name", {}),
        ("COMPANY_TYPE", "crm_status", False, "Company Type", {"statusType": "COMPANY_TYPE"}),
        ("LOGO", "file", False, "Logo", {}),
        *_ADDRESS,
        ("BANKING_DETAILS", "string", False, "Banking Details", {}),
        ("INDUSTRY", "crm_status", False, "Industry", {"statusType": "INDUSTRY"}),
        ("EMPLOYEES", "crm_status", False, "Number of Employees", {"statusType": "EMPLOYEES"}),
        ("CURRENCY_ID", "crm_currency", False, "Currency", {}),
        ("REVENUE", "double", False, "Annual Revenue", {}),
        ("OPENED", "char", False, "Available to Everyone", {}),
        ("COMMENTS", "string", False, "Comment", {}),
        ("HAS_PHONE", "char", True, "Phone Set", {}),
        ("HAS_EMAIL", "char", True, "E-mail Set", {}),
        ("HAS_IMOL", "char", True, "Open Line Set", {}),
        ("IS_MY_COMPANY", "char", False, "My Company", {}),
        *_AUDIT,
        ("LEAD_ID", "crm_lead", True, "Lead", {"settings": {"parentEntityTypeId": 1}}),
        *_UTM,
        *_MULTIFIELD_DESCRIPTORS,
    ),
    "deal": (
        ("ID", "integer", True, "ID", {}),
        ("TITLE", "string", False, "Title", {}),
        ("TYPE_ID", "crm_status", False, "Type", {"statusType": "DEAL_TYPE"}),
        ("CATEGORY_ID", "crm_category", False, "Sales Funnel", {}),
        ("STAGE_ID", "crm_status", False, "Deal Stage", {"statusType": "DEAL_STAGE"}),
        ("STAGE_SEMANTIC_ID", "string", True, "Stage Group", {}),
        ("IS_NEW", "char", True, "New Deal", {}),
        ("PROBABILITY", "integer", False, "Probability", {}),
        ("CURRENCY_ID", "crm_currency", False, "Currency", {}),
        ("OPPORTUNITY", "double", False, "Amount", {}),
        ("COMPANY_ID", "crm_company", False, "Company", {"settings": {"parentEntityTypeId": 4}}),
        ("CONTACT_ID", "crm_contact", False, "Contact", {"isDeprecated": True}),
        ("CONTACT_IDS", "crm_contact", False, "Contacts", {"isMultiple": True}),
        ("BEGINDATE", "date", False, "Start Date", {}),
        ("CLOSEDATE", "date", False, "Close Date", {}),
        ("OPENED", "char", False, "Available to All", {}),
        ("CLOSED", "char", False, "Closed", {}),
        ("COMMENTS", "string", False, "Comment", {}),
        *_AUDIT,
        ("SOURCE_ID", "crm_status", False, "Source", {"statusType": "SOURCE"}),
        ("SOURCE_DESCRIPTION", "string", False, "Additional Info about Source", {}),
        ("LEAD_ID", "crm_lead", True, "Lead", {"settings": {"parentEntityTypeId": 1}}),
        ("ADDITIONAL_INFO", "string", False, "Additional Information", {}),
        *_UTM,
    ),
}
_LIST_ONLY_ABSENT = frozenset({"CONTACT_IDS", "COMPANY_IDS"})
"""Fields crm.*.fields describes that crm.*.list never answers (bitrix-tools/b24-rest-docs#219)."""

ACTIVITY_FIELDS: tuple[str, ...] = (
    "ID",
    "OWNER_ID",
    "OWNER_TYPE_ID",
    "TYPE_ID",
    "PROVIDER_ID",
    "PROVIDER_TYPE_ID",
    "SUBJECT",
    "CREATED",
    "LAST_UPDATED",
    "START_TIME",
    "END_TIME",
    "DEADLINE",
    "COMPLETED",
    "STATUS",
    "RESPONSIBLE_ID",
    "PRIORITY",
    "DESCRIPTION",
    "DESCRIPTION_TYPE",
    "DIRECTION",
    "LOCATION",
    "AUTHOR_ID",
    "EDITOR_ID",
)
"""What crm.activity.list answers for ``*`` (DOCS: crm/timeline/activities/activity-base/crm-activity-list,
response example); ``COMMUNICATIONS`` and ``FILES`` only when named in ``select``."""
_ACTIVITY_NAMED_ONLY = ("COMMUNICATIONS", "FILES")
_REQUIRED = {"isRequired": True}
ACTIVITY_DESCRIPTORS: tuple[_Descriptor, ...] = (
    ("ID", "integer", True, "ID", {}),
    ("OWNER_ID", "integer", False, "Owner ID", {"isImmutable": True}),
    ("OWNER_TYPE_ID", "crm_enum_ownertype", False, "Owner Type", {"isImmutable": True}),
    ("TYPE_ID", "crm_enum_activitytype", False, "Type", {"isRequired": True, "isImmutable": True}),
    ("PROVIDER_ID", "string", False, "Provider ID", {}),
    ("PROVIDER_TYPE_ID", "string", False, "Provider Type", {}),
    ("PROVIDER_GROUP_ID", "string", False, "Connector Type", {}),
    ("ASSOCIATED_ENTITY_ID", "integer", True, "ID of the entity associated with the activity", {}),
    ("SUBJECT", "string", False, "Subject", _REQUIRED),
    ("START_TIME", "datetime", False, "Start", {}),
    ("END_TIME", "datetime", False, "Deadline", {}),
    ("DEADLINE", "datetime", False, "Due Date", {}),
    ("COMPLETED", "char", False, "Completed", {}),
    ("STATUS", "crm_enum_activitystatus", False, "Status", {}),
    ("RESPONSIBLE_ID", "user", False, "Responsible", _REQUIRED),
    ("PRIORITY", "crm_enum_activitypriority", False, "Priority", {}),
    ("NOTIFY_TYPE", "crm_enum_activitynotifytype", False, "Notification Type", {}),
    ("NOTIFY_VALUE", "integer", False, "Notification Parameter", {}),
    ("DESCRIPTION", "string", False, "Description", {}),
    ("DESCRIPTION_TYPE", "crm_enum_contenttype", False, "Description Type", {}),
    ("DIRECTION", "crm_enum_activitydirection", False, "Direction", {}),
    ("LOCATION", "string", False, "Location", {}),
    ("CREATED", "datetime", True, "Creation Date", {}),
    ("AUTHOR_ID", "user", True, "Created By", {}),
    ("LAST_UPDATED", "datetime", True, "Last Updated", {}),
    ("EDITOR_ID", "user", True, "Edited By", {}),
    ("SETTINGS", "object", False, "Settings", {}),
    ("ORIGIN_ID", "string", False, "External Code", {}),
    ("ORIGINATOR_ID", "string", False, "External Source", {}),
    ("RESULT_STATUS", "integer", False, "RESULT_STATUS", {}),
    ("RESULT_STREAM", "integer", False, "RESULT_STREAM", {}),
    ("RESULT_SOURCE_ID", "string", False, "RESULT_SOURCE_ID", {}),
    ("PROVIDER_PARAMS", "object", False, "Provider Parameters", {}),
    ("PROVIDER_DATA", "string", False, "Provider Data", {}),
    ("RESULT_MARK", "integer", False, "RESULT_MARK", {}),
    ("RESULT_VALUE", "double", False, "RESULT_VALUE", {}),
    ("RESULT_SUM", "double", False, "RESULT_SUM", {}),
    ("RESULT_CURRENCY_ID", "string", False, "RESULT_CURRENCY_ID", {}),
    ("AUTOCOMPLETE_RULE", "integer", False, "Autocomplete", {}),
    ("BINDINGS", "crm_activity_binding", True, "Bindings", {"isMultiple": True}),
    (
        "COMMUNICATIONS",
        "crm_activity_communication",
        False,
        "Communication Channel",
        {"isRequired": True, "isMultiple": True},
    ),
    ("FILES", "diskfile", False, "Files", {"isMultiple": True}),
    ("WEBDAV_ELEMENTS", "diskfile", False, "Added Files", {"isMultiple": True, "isDeprecated": True}),
    ("IS_INCOMING_CHANNEL", "char", True, "IS_INCOMING_CHANNEL", {}),
)
"""What crm.activity.fields answers, in its order, with its titles and flags (DOCS: crm/timeline/activities/
activity-base/crm-activity-fields, response example). Activities have no user fields: the REST API has no
``crm.activity.userfield.*`` (DOCS: crm/timeline/activities), so the answer is the same on every portal."""


@dataclass(frozen=True)
class PortalUserField:
    """A ``UF_CRM_*`` field as crm.*.userfield.list describes it."""

    id: int
    entity: str
    name: str
    type: str
    """``USER_TYPE_ID``: string, enumeration, date, datetime, money, file, boolean, integer, double, url,
    crm, employee."""
    label: str
    multiple: bool = False
    options: tuple[tuple[str, str], ...] = ()
    """(``ID``, ``VALUE``) of an enumeration's items."""
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredFile:
    id: int
    name: str
    content: bytes
    mime: str = "application/pdf"


@dataclass
class _Record:
    id: int
    values: dict[str, Any]
    multifields: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    comments: list[_Comment] = field(default_factory=list)


_USER_FIELD_SETTINGS: Mapping[str, Mapping[str, Any]] = {
    # DOCS: crm/_include/user-fields-for-examples-cut (settings of each type as crm.*.fields shows them).
    "string": {"SIZE": 20, "ROWS": 1, "REGEXP": "", "MIN_LENGTH": 0, "MAX_LENGTH": 0, "DEFAULT_VALUE": ""},
    "enumeration": {"DISPLAY": "LIST", "LIST_HEIGHT": 1, "CAPTION_NO_VALUE": "", "SHOW_NO_VALUE": "Y"},
    "date": {"DEFAULT_VALUE": {"TYPE": "NONE", "VALUE": ""}},
    "datetime": {"DEFAULT_VALUE": {"TYPE": "NONE", "VALUE": ""}, "USE_SECOND": "Y"},
    "url": {"POPUP": "Y", "SIZE": 20, "MIN_LENGTH": 0, "MAX_LENGTH": 0, "DEFAULT_VALUE": "", "ROWS": 1},
    "file": {"SIZE": 20, "LIST_WIDTH": 0, "LIST_HEIGHT": 0, "MAX_SHOW_SIZE": 0, "MAX_ALLOWED_SIZE": 0},
    "money": {"DEFAULT_VALUE": ""},
    "boolean": {"DEFAULT_VALUE": 0, "DISPLAY": "CHECKBOX"},
    "double": {"PRECISION": 2, "SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0, "DEFAULT_VALUE": None},
    "integer": {"SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0, "DEFAULT_VALUE": None},
}


def _row_values(row: Mapping[str, Any], name: str) -> list[Any] | None:
    """What a filter on ``name`` compares a status's or an activity's value with (None: no such field)."""
    return [row[name]] if name in row else None


class PortalEntities:
    """Everything of a portal but leads, and what leads need from it (their typed user fields,
    custom stages, files), answering the methods :meth:`methods` lists."""

    def __init__(self, sim: SimulatedBitrix24) -> None:
        self._sim = sim
        self.records: dict[str, dict[int, _Record]] = {entity: {} for entity in NATIVE_FIELDS}
        self._next_ids = dict(FIRST_IDS)
        self.activities: dict[int, dict[str, Any]] = {}
        self.bindings: dict[int, list[tuple[int, int]]] = {}
        """Activity id -> (entity type id, record id) it is bound to, its owner first."""
        self.users: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.categories: list[dict[str, Any]] = [
            {"id": 0, "name": "General", "sort": 300, "entityTypeId": 2, "isDefault": "Y"}
        ]
        self.user_fields: dict[str, list[PortalUserField]] = {entity: [] for entity in ENTITY_TYPE_IDS}
        self.files: dict[int, StoredFile] = {}
        self.downloads = 0
        """File links fetched (not REST calls: the leaky bucket does not count them)."""
        self._ids = {
            "activity": itertools.count(FIRST_ACTIVITY_ID),
            "file": itertools.count(FIRST_FILE_ID),
            "user_field": itertools.count(FIRST_USER_FIELD_ID),
            "option": itertools.count(FIRST_OPTION_ID),
            "status": itertools.count(1),
        }

    def methods(self) -> dict[str, Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]]:
        methods: dict[str, Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]] = {
            "crm.status.list": self._status_list,
            "crm.category.list": self._category_list,
            "user.get": self._user_get,
            "crm.activity.list": self._activity_list,
            "crm.activity.binding.list": self._activity_binding_list,
            "crm.activity.fields": self._activity_fields,
        }
        for entity in NATIVE_FIELDS:
            methods[f"crm.{entity}.list"] = self._lister(entity)
            methods[f"crm.{entity}.get"] = self._getter(entity)
            methods[f"crm.{entity}.fields"] = self._describer(entity)
        for entity in ENTITY_TYPE_IDS:
            methods[f"crm.{entity}.userfield.list"] = self._user_field_lister(entity)
        return methods

    # --- seeding (the backdoor) -------------------------------------------------------------------

    def add_user(self, name: str, last_name: str, email: str, *, active: bool = True) -> str:
        """A portal user (DOCS: user/user-get, response example: ``ACTIVE`` is a JSON boolean)."""
        user_id = str(len(self.users) + 1)
        self.users.append(
            {
                "ID": user_id,
                "ACTIVE": active,
                "NAME": name,
                "LAST_NAME": last_name,
                "SECOND_NAME": "",
                "EMAIL": email,
                "USER_TYPE": "employee",
            }
        )
        return user_id

    def add_status(
        self, entity_id: str, status_id: str, name: str, *, semantics: str | None = None, category_id: int | None = None
    ) -> None:
        """A status-list item; ``semantics`` None (in progress), "S" or "F" (DOCS: crm/status/crm-status-list)."""
        sort = 10 * (1 + sum(1 for status in self.statuses if status["ENTITY_ID"] == entity_id))
        extra = {None: "process", "S": "success", "F": "failure"}[semantics]
        self.statuses.append(
            {
                "ID": str(next(self._ids["status"])),
                "ENTITY_ID": entity_id,
                "STATUS_ID": status_id,
                "NAME": name,
                "NAME_INIT": "",
                "SORT": str(sort),
                "SYSTEM": "N",
                "CATEGORY_ID": None if category_id is None else str(category_id),
                "COLOR": "#39A8EF",
                "SEMANTICS": semantics,
                "EXTRA": {"SEMANTICS": extra, "COLOR": "#39A8EF"},
            }
        )

    def add_category(self, name: str) -> int:
        """A deal pipeline (DOCS: crm/universal/category/crm-category-list)."""
        category_id = max(int(category["id"]) for category in self.categories) + 1
        self.categories.append(
            {"id": category_id, "name": name, "sort": 100 * category_id, "entityTypeId": 2, "isDefault": "N"}
        )
        return category_id

    def add_user_field(
        self,
        entity: str,
        name: str,
        kind: str,
        label: str,
        *,
        multiple: bool = False,
        options: Iterable[str] = (),
        settings: Mapping[str, Any] | None = None,
    ) -> PortalUserField:
        """A ``UF_CRM_*`` field of ``entity``; an enumeration's items get portal-wide ids ("61"...)."""
        items = tuple((str(next(self._ids["option"])), label_) for label_ in options)
        user_field = PortalUserField(
            next(self._ids["user_field"]),
            entity,
            name,
            kind,
            label,
            multiple,
            items,
            dict(_USER_FIELD_SETTINGS.get(kind, {})) | dict(settings or {}),
        )
        self.user_fields[entity].append(user_field)
        if entity == "lead":
            self._sim.user_fields.append(name)
        return user_field

    def add_file(self, name: str, content: bytes, mime: str = "application/pdf") -> int:
        file_id = next(self._ids["file"])
        self.files[file_id] = StoredFile(file_id, name, content, mime)
        return file_id

    def file_value(self, entity: str, owner_id: int | str, field_name: str, file_id: int) -> dict[str, Any]:
        """A file user field's value as crm.<entity>.get/list answer it: ``id``, ``showUrl`` and
        ``downloadUrl``, paths on the portal (bitrix-tools/b24-rest-docs#94, a crm.deal.get answer)."""
        query = f"ownerId={owner_id}&fieldName={field_name}&dynamic=Y&fileId={file_id}"
        path = f"/bitrix/components/bitrix/crm.{entity}.show/show_file.php"
        return {"id": file_id, "showUrl": f"{path}?{query}", "downloadUrl": f"{path}?auth=&{query}"}

    def add_record(
        self,
        entity: str,
        values: Mapping[str, Any],
        multifields: Mapping[str, Iterable[tuple[str, str]]] | None = None,
    ) -> str:
        """A contact, company or deal as stored (values in the form the API answers them)."""
        record_id = self._next_ids[entity]
        self._next_ids[entity] += 1
        now = _now_iso()
        stored: dict[str, Any] = dict.fromkeys(name for name, *_ in NATIVE_FIELDS[entity] if name not in MULTIFIELDS)
        stored |= {"ID": str(record_id), "OPENED": "Y", "DATE_CREATE": now, "DATE_MODIFY": now}
        stored |= {"CREATED_BY_ID": str(self._sim.user_id), "MODIFY_BY_ID": str(self._sim.user_id)}
        stored |= dict(values)
        record = _Record(record_id, stored)
        for kind, items in (multifields or {}).items():
            record.multifields[kind] = [self._sim.multifield_item(value, value_type) for value, value_type in items]
        if entity == "deal":
            stored["STAGE_SEMANTIC_ID"] = self._stage_semantics(str(stored.get("STAGE_ID") or ""))
            stored["CLOSED"] = "N" if stored["STAGE_SEMANTIC_ID"] == "P" else "Y"
        if entity in ("contact", "company"):
            stored |= communication_flags(record.multifields)
        self.records[entity][record_id] = record
        return str(record_id)

    def store_values(self, entity: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Set a record's values as stored (a file user field names its record: it comes after the add)."""
        if entity == "lead":
            self._sim.store_values(record_id, values)
        else:
            self.records[entity][int(record_id)].values.update(values)

    def record(self, entity: str, record_id: str) -> dict[str, Any]:
        """A record as crm.<entity>.get answers it."""
        if entity == "lead":
            return self._sim.lead(record_id)
        return self._record(entity, self.records[entity][int(record_id)], None)

    def add_activity(
        self,
        values: Mapping[str, Any],
        communications: Iterable[Mapping[str, Any]] = (),
        also_bound_to: Iterable[tuple[str, str]] = (),
    ) -> str:
        """An activity (call, meeting, e-mail, task) on its owner (``OWNER_TYPE_ID``/``OWNER_ID``) and
        ``also_bound_to`` these (entity, id); ``FILES`` as file ids."""
        activity_id = next(self._ids["activity"])
        stored: dict[str, Any] = dict.fromkeys(ACTIVITY_FIELDS) | {"ID": str(activity_id)}
        stored |= {key: value for key, value in values.items() if key != "FILES"}
        stored["COMMUNICATIONS"] = [dict(item) for item in communications]
        stored["FILES"] = [
            {
                "id": file_id,
                # DOCS: crm-activity-list, "Retrieving Attachments" example.
                "url": f"{self._sim.portal}/bitrix/tools/crm_show_file.php?fileId={file_id}"
                f"&ownerTypeId=6&ownerId={activity_id}&auth=",
            }
            for file_id in values.get("FILES", ())
        ]
        self.activities[activity_id] = stored
        owner = (int(stored["OWNER_TYPE_ID"]), int(stored["OWNER_ID"]))
        others = [(ENTITY_TYPE_IDS[entity], int(record_id)) for entity, record_id in also_bound_to]
        self.bindings[activity_id] = list(dict.fromkeys([owner, *others]))
        return str(activity_id)

    def add_comment(
        self, entity: str, record_id: str, text: str, when: datetime, author_id: str, file_ids: tuple[int, ...] = ()
    ) -> None:
        comment = _Comment(self._sim.next_comment_id(), text, _now_iso(when.timestamp()), author_id, file_ids)
        self.records[entity][int(record_id)].comments.append(comment)

    # --- what the leads take from the portal -----------------------------------------------------------

    def lead_semantics(self, status_id: str) -> str:
        """``STATUS_SEMANTIC_ID`` of a lead in this stage: P, S or F, by the stage's ``SEMANTICS``
        (the defaults CONVERTED success and JUNK failure when the portal lists no such stage)."""
        for status in self.statuses:
            if status["ENTITY_ID"] == "STATUS" and status["STATUS_ID"] == status_id:
                return str(status["SEMANTICS"] or "P")
        return {"CONVERTED": "S", "JUNK": "F"}.get(status_id, "P")

    def _stage_semantics(self, stage_id: str) -> str:
        for status in self.statuses:
            if status["ENTITY_ID"].startswith("DEAL_STAGE") and status["STATUS_ID"] == stage_id:
                return str(status["SEMANTICS"] or "P")
        return "P"

    def user_field_descriptor(self, entity: str, name: str) -> dict[str, Any] | None:
        """A typed user field as crm.<entity>.fields describes it: ``isDynamic``, the code as ``title``,
        labels in listLabel/formLabel/filterLabel, an enumeration's ``items`` (DOCS: crm/_include/
        user-fields-for-examples-cut; crm/companies/crm-company-fields example); None: not one of these."""
        user_field = next((item for item in self.user_fields[entity] if item.name == name), None)
        if user_field is None:
            return None
        descriptor: dict[str, Any] = {
            "type": user_field.type,
            "isRequired": False,
            "isReadOnly": False,
            "isImmutable": False,
            "isMultiple": user_field.multiple,
            "isDynamic": True,
            "title": name,
            "listLabel": user_field.label,
            "formLabel": user_field.label,
            "filterLabel": user_field.label,
            "settings": dict(user_field.settings),
        }
        if user_field.type == "enumeration":
            descriptor["items"] = [{"ID": option_id, "VALUE": value} for option_id, value in user_field.options]
        return descriptor

    def comments_of(self, entity_type: str, entity_id: int) -> list[_Comment]:
        record = self.records.get(entity_type, {}).get(entity_id)
        return record.comments if record is not None else []

    def comment_files(self, comment: _Comment) -> dict[str, dict[str, Any]]:
        """``FILES`` of a timeline comment: an object keyed by file id (DOCS: crm/timeline/comments/
        crm-timeline-comment-list, response example)."""
        files: dict[str, dict[str, Any]] = {}
        for file_id in comment.file_ids:
            stored = self.files[file_id]
            name = quote(stored.name)
            files[str(file_id)] = {
                "id": file_id,
                "date": comment.created,
                "type": "file",
                "name": stored.name,
                "size": len(stored.content),
                "authorId": int(comment.author_id or self._sim.user_id),
                "authorName": "",
                "urlPreview": "",
                "urlShow": f"{self._sim.portal}/disk/showFile/{file_id}/?&ncc=1&filename={name}",
                "urlDownload": f"{self._sim.portal}/disk/downloadFile/{file_id}/?&ncc=1&filename={name}",
            }
        return files

    def serve_file(self, request: httpx.Request) -> httpx.Response | None:
        """The bytes behind a file link this portal gave (a user field's ``downloadUrl``, an activity
        file's ``url``, a comment file's ``urlDownload``); None: not a file link."""
        match = _FILE_PATHS.match(request.url.path)
        if match is None:
            return None
        file_id = _php_intval(match.group("disk") or request.url.params.get("fileId", "0"))
        stored = self.files.get(file_id)
        if stored is None:
            return httpx.Response(404, text="File not found", headers={"Content-Type": "text/html"})
        self.downloads += 1
        disposition = f"attachment; filename*=UTF-8''{quote(stored.name)}"
        return httpx.Response(
            200, content=stored.content, headers={"Content-Type": stored.mime, "Content-Disposition": disposition}
        )

    # --- crm.contact / crm.company / crm.deal ----------------------------------------------------------

    def _user_field_names(self, entity: str) -> list[str]:
        return [user_field.name for user_field in self.user_fields[entity]]

    def _record(self, entity: str, record: _Record, select: list[str] | None) -> dict[str, Any]:
        """As crm.<entity>.get (``select=None``) or .list answers: natives, user fields, then the
        non-empty multi-fields (named ones only in a list)."""
        natives = [name for name, *_ in NATIVE_FIELDS[entity] if name not in MULTIFIELDS]
        if select is not None:
            natives = [name for name in natives if name not in _LIST_ONLY_ABSENT]
        user_fields = self._user_field_names(entity)
        names = selected_names(select, natives, user_fields)
        answer = {name: record.values.get(name) for name in (*natives, *user_fields) if name in names}
        for kind in MULTIFIELDS:
            if kind in names and record.multifields.get(kind):
                answer[kind] = [{**item, "TYPE_ID": kind} for item in record.multifields[kind]]
        return answer

    def _values_of(self, entity: str, record: _Record, name: str) -> list[Any] | None:
        if name in MULTIFIELDS:
            return [item["VALUE"] for item in record.multifields.get(name, [])]
        if name in record.values or name in self._user_field_names(entity):
            value = record.values.get(name)
            return value if isinstance(value, list) else [value]
        return None

    def _lister(self, entity: str) -> Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]:
        def list_records(params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            """crm.<entity>.list: filter, order, select, 50 a page (DOCS: crm-contact-list, crm-deal-list)."""
            filters, order, select, start = list_params(params)
            rows = [
                record
                for record in self.records[entity].values()
                if filter_matches(filters, partial(self._values_of, entity, record))
            ]
            rows = sorted_rows(
                sorted(rows, key=lambda record: record.id), order, lambda row, name: row.values.get(name)
            )
            page, extra = list_page(rows, start)
            return [self._record(entity, record, select) for record in page], extra

        return list_records

    def _getter(self, entity: str) -> Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]:
        def get_record(params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            record_id = _resolve_entity_id(params)
            if record_id <= 0:
                raise _legacy("ID is not defined or invalid.")
            record = self.records[entity].get(record_id)
            if record is None:
                raise _legacy("Not found")
            return self._record(entity, record, None), {}

        return get_record

    def _describer(self, entity: str) -> Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]:
        def describe(params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            result: dict[str, Any] = {}
            for name, kind, read_only, title, extra in NATIVE_FIELDS[entity]:
                result[name] = native_descriptor(kind, read_only, title, extra)
            for name in self._user_field_names(entity):
                result[name] = self.user_field_descriptor(entity, name)
            return result, {}

        return describe

    # --- crm.*.userfield.list ----------------------------------------------------------------------------

    def _user_field_lister(self, entity: str) -> Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]:
        def list_user_fields(params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            """The entity's user fields with an enumeration's ``LIST``; the labels only when the filter
            names a ``LANG``; one page of 50 (DOCS: crm/leads/userfield/crm-lead-userfield-list).
            Filter: FIELD_NAME, USER_TYPE_ID, MULTIPLE exactly."""
            filters, _, _, start = list_params(params)
            language = filters.get("LANG")
            wanted = {key: value for key, value in filters.items() if key != "LANG"}
            entries = [
                self._user_field_entry(entity, user_field, labelled=bool(language))
                for user_field in self._user_fields_of(entity)
            ]
            rows = [
                entry for entry in entries if all(str(entry.get(key)) == str(value) for key, value in wanted.items())
            ]
            return list_page(rows, max(start, 0))

        return list_user_fields

    def _user_fields_of(self, entity: str) -> list[PortalUserField]:
        """The entity's user fields as the portal has them now: for leads, the live flow's fields
        (``sim.user_fields``, string or boolean) too, and none that was dropped."""
        if entity != "lead":
            return self.user_fields[entity]
        typed = {user_field.name: user_field for user_field in self.user_fields["lead"]}
        fields = []
        for number, name in enumerate(self._sim.user_fields):
            if name in typed:
                fields.append(typed[name])
            else:
                legacy = _user_field_descriptor(name)
                settings = legacy.get("settings", {})
                label = legacy["listLabel"]
                fields.append(
                    PortalUserField(
                        LEGACY_USER_FIELD_ID + number, "lead", name, legacy["type"], label, settings=settings
                    )
                )
        return fields

    @staticmethod
    def _user_field_entry(entity: str, user_field: PortalUserField, *, labelled: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "ID": str(user_field.id),
            "ENTITY_ID": f"CRM_{entity.upper()}",
            "FIELD_NAME": user_field.name,
            "USER_TYPE_ID": user_field.type,
            "XML_ID": None,
            "SORT": "100",
            "MULTIPLE": "Y" if user_field.multiple else "N",
            "MANDATORY": "N",
            "SHOW_FILTER": "E",
            "SHOW_IN_LIST": "Y",
            "EDIT_IN_LIST": "Y",
            "IS_SEARCHABLE": "N",
            "SETTINGS": dict(user_field.settings),
        }
        if labelled:  # in the language the filter asked for; this portal has one
            entry |= dict.fromkeys(("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL"), user_field.label)
            entry |= {"ERROR_MESSAGE": None, "HELP_MESSAGE": None}
        if user_field.type == "enumeration":
            entry["LIST"] = [
                {
                    "ID": option_id,
                    "SORT": str(10 * (index + 1)),
                    "VALUE": value,
                    "DEF": "N",
                    "XML_ID": f"opt{option_id}",
                }
                for index, (option_id, value) in enumerate(user_field.options)
            ]
        return entry

    # --- crm.status.list, crm.category.list, user.get -----------------------------------------------------

    def _status_list(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.status.list: filter (ENTITY_ID...), order (SORT), 50 a page (DOCS: crm/status/crm-status-list).
        Assumed: paged like the other legacy lists."""
        filters, order, _, start = list_params(params)
        rows = [status for status in self.statuses if filter_matches(filters, partial(_row_values, status))]
        rows = sorted_rows(rows, order or {"SORT": "ASC"}, lambda row, name: row.get(name))
        return list_page(rows, start)

    def _category_list(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.category.list: ``{"categories": [...]}`` of one ``entityTypeId`` (DOCS: crm/universal/category/
        crm-category-list); only deals (2) have pipelines here."""
        entity_type_id = _php_intval(params.get("entityTypeId"))
        if entity_type_id <= 0:
            raise _legacy("entityTypeId is required")
        categories = [category for category in self.categories if category["entityTypeId"] == entity_type_id]
        return {"categories": categories}, {"total": len(categories)}

    def _user_get(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """user.get: every user, those who left too unless ``ACTIVE`` true is asked; by ID, 50 a page
        (DOCS: user/user-get). Filter keys come in ``filter`` or, the older way, as parameters."""
        filters = _resolve_array_param(params, "filter", None)
        if not isinstance(filters, dict):
            filters = {key: value for key, value in params.items() if key.upper() in ("ACTIVE", "ID", "EMAIL")}
        active = filters.get("ACTIVE")
        rows = [
            user
            for user in self.users
            if active is None or user["ACTIVE"] == (str(active).lower() in ("true", "1", "y"))
        ]
        return list_page(rows, max(_php_intval(params.get("start", 0)), 0))

    # --- crm.activity.list -----------------------------------------------------------------------------

    def _activity_list(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.activity.list: filter (ID, OWNER_TYPE_ID, OWNER_ID, TYPE_ID...), order, select; COMMUNICATIONS
        and FILES only when named (DOCS: crm/timeline/activities/activity-base/crm-activity-list)."""
        filters, order, select, start = list_params(params)
        rows = [
            activity for activity in self.activities.values() if filter_matches(filters, partial(_row_values, activity))
        ]
        rows = sorted_rows(sorted(rows, key=lambda row: int(row["ID"])), order, lambda row, name: row.get(name))
        page, extra = list_page(rows, start)
        wanted = set(select) or {"*"}
        names = {name for name in ACTIVITY_FIELDS if "*" in wanted or name in wanted}
        names |= {name for name in _ACTIVITY_NAMED_ONLY if name in wanted}
        return [{key: value for key, value in activity.items() if key in names} for activity in page], extra

    def _activity_fields(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.activity.fields: every field's descriptor (DOCS: crm-activity-fields); no parameters."""
        return {
            name: native_descriptor(kind, read_only, title, extra)
            for name, kind, read_only, title, extra in ACTIVITY_DESCRIPTORS
        }, {}

    def _activity_binding_list(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.activity.binding.list: the records an activity is bound to, ``entityTypeId`` and ``entityId``
        as integers; an unknown activity is 400 NOT_FOUND (DOCS: crm/timeline/activities/binding/
        crm-activity-binding-list). Not paged."""
        bindings = self.bindings.get(_php_intval(params.get("activityId")))
        if bindings is None:
            raise _ApiError(400, "NOT_FOUND", "Element not found")
        return [{"entityTypeId": entity_type_id, "entityId": entity_id} for entity_type_id, entity_id in bindings], {}
