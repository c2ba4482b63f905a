"""What the website may send, and what it becomes: normalised, bounded, or refused by name."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

import pytest
from pydantic import ValidationError

from crm_bridge.models import (
    Application,
    Attribution,
    Channel,
    MessengerActivity,
    MessengerClickOperation,
    OperationKind,
    Origin,
    UpsertLeadOperation,
    dump_operation,
    parse_operation,
)
from crm_bridge.settings import CrmProviderName


def application(**overrides: object) -> Application:
    data: dict[str, object] = {"name": "Ayşe Yılmaz", "phone": "+90 532 123 45 67"}
    data.update(overrides)
    return Application.model_validate(data)


def error_fields(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(part) for part in error["loc"]) for error in exc.value.errors()}


@pytest.mark.parametrize(
    "raw",
    ["+90 532 123 45 67", "+905321234567", "0532 123 45 67", "(0532) 123-45-67", "00905321234567", "532 123 4567"],
)
def test_turkish_phones_in_any_format_become_e164(raw: str) -> None:
    assert application(phone=raw).phone == "+905321234567"


def test_a_foreign_number_with_its_country_code_keeps_it() -> None:
    assert application(phone="+1 (202) 555-0143").phone == "+12025550143"


def test_the_default_region_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    from crm_bridge.settings import default_phone_region

    monkeypatch.setenv("DEFAULT_PHONE_REGION", "kz")
    default_phone_region.cache_clear()
    assert application(phone="8 701 234 5678").phone == "+77012345678"


@pytest.mark.parametrize("raw", ["12", "not a phone", "+90 000", "+1" + "5" * 40])
def test_a_bad_phone_is_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationError) as exc:
        application(phone=raw)
    assert error_fields(exc) == {"phone"}


def test_email_is_trimmed_and_lower_cased() -> None:
    assert application(email="  Jane.Doe@Example.COM ").email == "jane.doe@example.com"


@pytest.mark.parametrize("raw", ["jane", "jane@", "@example.com", "jane doe@example.com", "a@b@c.com", "x@y"])
def test_a_bad_email_is_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationError) as exc:
        application(email=raw)
    assert error_fields(exc) == {"email"}


def test_a_full_name_is_split_on_its_last_word() -> None:
    name = application(name="Ayşe Nur Yılmaz").person_name()
    assert (name.first_name, name.last_name) == ("Ayşe Nur", "Yılmaz")
    assert application(name="Madonna").person_name().first_name == "Madonna"


def test_first_and_last_name_win_over_the_full_name() -> None:
    name = application(name="ignored", first_name="Иван", last_name="Петров").person_name()
    assert (name.first_name, name.last_name) == ("Иван", "Петров")


def test_a_nameless_or_unreachable_application_is_refused() -> None:
    with pytest.raises(ValidationError, match="give a name"):
        Application.model_validate({"phone": "+905321234567"})
    with pytest.raises(ValidationError, match="phone' or 'email"):
        Application.model_validate({"name": "Ayşe"})


def test_text_is_cleaned_of_control_and_bidi_characters_and_bounded() -> None:
    cleaned = application(name="  Ay\u202eşe\x00   Yılmaz ", message="line one\r\nline\x07 two\n").model_dump()
    assert cleaned["name"] == "Ayşe Yılmaz"
    assert cleaned["message"] == "line one\nline two"
    with pytest.raises(ValidationError) as exc:
        application(program="x" * 256)
    assert error_fields(exc) == {"program"}


def test_empty_strings_mean_absent() -> None:
    app = application(email="", program="   ")
    assert app.email is None
    assert app.program is None


def test_unknown_fields_are_refused_by_name() -> None:
    with pytest.raises(ValidationError) as exc:
        application(favourite_colour="blue")
    assert error_fields(exc) == {"favourite_colour"}


@pytest.mark.parametrize("code", ["PARTNER-42", "abc_1", "X"])
def test_safe_referral_codes_are_kept(code: str) -> None:
    assert Attribution(referral_code=code).referral_code == code


@pytest.mark.parametrize("code", ["-lead", "a b", "<script>", "x" * 65, "код"])
def test_unsafe_referral_codes_are_refused(code: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Attribution(referral_code=code)
    assert error_fields(exc) == {"referral_code"}


def test_messenger_activity_validates_channel_session_and_page() -> None:
    activity = MessengerActivity.model_validate(
        {"channel": "telegram", "session_id": "sess-12345678", "page": "/programs/medicine"}
    )
    assert activity.channel is Channel.TELEGRAM
    with pytest.raises(ValidationError) as exc:
        MessengerActivity.model_validate({"channel": "viber", "session_id": "short", "page": "javascript:alert(1)"})
    assert error_fields(exc) == {"channel", "session_id", "page"}


def test_operations_round_trip_through_json_unchanged() -> None:
    upsert = UpsertLeadOperation(
        origin=Origin.APPLICATIONS_API,
        correlation_id="req-1",
        payload=application(
            email="a@b.com", user_type="student", attribution={"referral_code": "P1", "utm_source": "ig"}
        ),
    )
    click = MessengerClickOperation(
        origin=Origin.REDIRECT,
        payload=MessengerActivity(
            channel=Channel.WHATSAPP,
            session_id="visitor-0001",
            session_started=False,
            linked_session_id="tap-session-0001",
        ),
    )
    for operation in (upsert, click):
        text = dump_operation(operation)
        assert parse_operation(text) == operation
        assert dump_operation(parse_operation(text)) == text


def test_the_envelope_carries_version_kind_id_time_and_origin() -> None:
    operation = UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application())
    envelope = json.loads(dump_operation(operation))
    assert envelope["schema_version"] == 1
    assert envelope["kind"] == "lead.upsert" == OperationKind.UPSERT_LEAD.value
    assert UUID(envelope["operation_id"]) == operation.operation_id
    assert datetime.fromisoformat(envelope["created_at"]).tzinfo is not None
    assert envelope["origin"] == "api.applications"
    assert envelope["payload"]["phone"] == "+905321234567"


def test_an_unknown_kind_or_version_is_refused() -> None:
    envelope = json.loads(dump_operation(UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application())))
    with pytest.raises(ValidationError):
        parse_operation(json.dumps({**envelope, "kind": "lead.delete"}))
    with pytest.raises(ValidationError):
        parse_operation(json.dumps({**envelope, "schema_version": 2}))


def test_created_at_must_carry_a_timezone() -> None:
    with pytest.raises(ValidationError):
        UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application(), created_at=datetime(2026, 1, 1))
    assert UpsertLeadOperation(
        origin=Origin.APPLICATIONS_API, payload=application(), created_at=datetime(2026, 1, 1, tzinfo=UTC)
    ).created_at.tzinfo


def test_an_operation_names_no_crm_unless_it_is_a_dual_writes_copy() -> None:
    operation = UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application(message="Çok güzel"))
    message = operation.message()
    assert operation.provider is None
    assert "provider" not in json.loads(message.body), "the envelope as it was before dual-writes"
    assert "provider" not in message.attributes()

    copy = message.copy_for("bitrix24")

    named = operation.model_copy(update={"provider": CrmProviderName.BITRIX24})
    assert copy.body == named.model_dump_json(), "byte for byte what pydantic writes for the copy"
    assert parse_operation(copy.body) == named
    assert copy.attributes() == named.message().attributes()
    assert copy.attributes()["provider"] == {"DataType": "String", "StringValue": "bitrix24"}
    assert copy.identity()["provider"] == "bitrix24"
    assert (copy.operation_id, copy.kind, copy.origin) == (message.operation_id, message.kind, message.origin)


def test_an_envelope_that_names_no_crm_is_one_for_the_primary() -> None:
    operation = MessengerClickOperation(
        origin=Origin.REDIRECT, payload=MessengerActivity(channel=Channel.TELEGRAM, session_id="visitor-0001")
    )
    envelope = json.loads(dump_operation(operation))

    assert parse_operation(json.dumps(envelope)).provider is None
    assert parse_operation(json.dumps({**envelope, "provider": None})) == operation
    with pytest.raises(ValidationError):
        parse_operation(json.dumps({**envelope, "provider": "salesforce"}))
