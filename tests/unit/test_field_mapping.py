"""The field mapping is configuration: defaults plus an override, validated before any lead is sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crm_bridge.errors import SettingsError
from crm_bridge.field_mapping import MappedField, load_field_mapping


def override(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(data))
    return path


def test_the_defaults_map_every_domain_field_for_espocrm() -> None:
    mapping = load_field_mapping()
    assert mapping.espocrm.attribute(MappedField.REFERRAL_CODE) == "cReferralCode"
    assert set(mapping.espocrm.lead_fields) == set(MappedField)
    assert mapping.espocrm.crm_value(MappedField.USER_TYPE, "student") == "Student"
    assert mapping.bitrix24.attribute(MappedField.UTM_SOURCE) == "UTM_SOURCE"


def test_an_override_changes_adds_and_removes_fields(tmp_path: Path) -> None:
    mapping = load_field_mapping(
        override(
            tmp_path,
            {
                "version": 1,
                "bitrix24": {
                    "lead_fields": {"referral_code": "UF_CRM_1712345678", "gclid": None, "utm_id": "UF_CRM_UTM_ID"},
                    "enum_values": {"user_type": {"student": "45", "parent": "47", "other": "49"}},
                },
            },
        )
    )
    assert mapping.bitrix24.attribute(MappedField.REFERRAL_CODE) == "UF_CRM_1712345678"
    assert mapping.bitrix24.attribute(MappedField.UTM_ID) == "UF_CRM_UTM_ID"
    assert mapping.bitrix24.attribute(MappedField.GCLID) is None
    assert mapping.bitrix24.crm_value(MappedField.USER_TYPE, "parent") == "47"
    assert mapping.bitrix24.attribute(MappedField.UTM_SOURCE) == "UTM_SOURCE", "defaults kept"


def test_an_espocrm_custom_field_without_its_c_prefix_is_refused(tmp_path: Path) -> None:
    """EspoCRM would drop ``referralCode`` silently (fixtures 38/39): refuse it at start-up."""
    path = override(tmp_path, {"espocrm": {"lead_fields": {"referral_code": "referralCode"}}})
    with pytest.raises(
        SettingsError, match=r"lead_fields\.referral_code: 'referralCode'.*did you mean 'cReferralCode'"
    ):
        load_field_mapping(path)


def test_pre_8_2_espocrm_installs_may_use_unprefixed_names(tmp_path: Path) -> None:
    path = override(tmp_path, {"espocrm": {"custom_prefix": False, "lead_fields": {"referral_code": "referralCode"}}})
    assert load_field_mapping(path).espocrm.attribute(MappedField.REFERRAL_CODE) == "referralCode"


def test_a_bitrix_field_that_is_neither_native_nor_a_user_field_is_refused(tmp_path: Path) -> None:
    path = override(tmp_path, {"bitrix24": {"lead_fields": {"program": "PROGRAM"}}})
    with pytest.raises(SettingsError, match=r"bitrix24: lead_fields\.program: 'PROGRAM' is neither"):
        load_field_mapping(path)


def test_list_values_must_cover_every_domain_value(tmp_path: Path) -> None:
    path = override(tmp_path, {"bitrix24": {"enum_values": {"user_type": {"student": "45", "alumni": "51"}}}})
    with pytest.raises(
        SettingsError,
        match=r"enum_values\.user_type: must map exactly.*missing \['other', 'parent'\], unknown \['alumni'\]",
    ):
        load_field_mapping(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read it as JSON"),
        ("[]", "must be a JSON object"),
        ('{"version": 2}', "version 2 is not supported"),
        ('{"espocrm": {"lead_fields": {"favourite_colour": "cColour"}}}', "favourite_colour"),
    ],
)
def test_a_broken_override_names_the_file_and_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(content)
    with pytest.raises(SettingsError, match=f"CRM_FIELD_MAPPING_FILE \\(mapping.json\\).*{message}"):
        load_field_mapping(path)
