"""adt.config and adt.table: the ADT values bodies, their validation and derived rule ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
import pytest

import adt.config
from adt import (
    AdtConfigError,
    AdtTable,
    AdtValues,
    ExceptionWindow,
    Threshold,
    ValueRule,
    convert_values,
    decode_values,
    encode_values,
)

USER = "90-B3-D5-1F-30-01-00-00"

FULL_BODY = b"""{
  "thresholds": [
    {"srv": "7.2", "window_s": 3600, "max": 500},
    {"srv": "*", "window_s": 86400, "max": 20000, "shadow": true},
    {"srv": "11.1", "window_s": 86400, "max": 100, "id": "fw-daily"}
  ],
  "value_rules": [
    {"srv": "2.2", "field": "amount", "min": 0, "max": 500},
    {"srv": "11.3", "field": "activation_datetime", "max_days_ahead": 30}
  ],
  "exceptions": [
    {"id": "fw-june", "start": "2025-06-01T00:00:00Z", "end": "2025-06-08T00:00:00Z",
     "thresholds": {"fw-daily": 9000}, "reason": "firmware roll-out"}
  ],
  "shadow": false
}"""


def test_the_documented_body_decodes() -> None:
    values = decode_values(FULL_BODY)
    assert values.thresholds[0] == Threshold(srv="7.2", window_s=3600, max=500)
    assert values.value_rules[1].max_days_ahead == 30
    assert values.exceptions[0].start == datetime(2025, 6, 1, tzinfo=UTC)
    assert values.exceptions[0].end_s - values.exceptions[0].start_s == 7 * 86400


def test_encode_then_decode_is_the_same_values() -> None:
    values = decode_values(FULL_BODY)
    assert decode_values(encode_values(values)) == values


def test_the_minimal_body_is_empty_values() -> None:
    assert decode_values(b"{}") == AdtValues()
    assert decode_values(b'{"thresholds": [], "value_rules": [], "shadow": true}').shadow


def test_convert_values_takes_builtins() -> None:
    values = convert_values({"thresholds": [{"srv": "7.2", "window_s": 60, "max": 1}]})
    assert values.thresholds[0].window_s == 60


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"thresholds": [{"srv": "7.2", "window_s": 0, "max": 5}]}', "window_s must be"),
        (
            b'{"thresholds": [{"srv": "7.2", "window_s": 2678401, "max": 5}]}',
            r"from 1 to 2678400 \(31 days\)",
        ),
        (b'{"thresholds": [{"srv": "7.2", "window_s": 60, "max": -1}]}', "max must be"),
        (b'{"thresholds": [{"srv": "7.x", "window_s": 60, "max": 1}]}', "srv '7.x' is not"),
        (b'{"thresholds": [{"srv": "7.2", "window_s": 60}]}', "missing required field `max`"),
        (
            b'{"thresholds": [{"srv": "7.2", "windows_s": 60, "max": 1}]}',
            "unknown field `windows_s`",
        ),
        (b'{"thresholds": [{"srv": "7.2", "window_s": "60", "max": 1}]}', "Expected `int`"),
        (b'{"value_rules": [{"srv": "2.2", "field": "amount"}]}', "has no limit"),
        (
            b'{"value_rules": [{"srv": "2.2", "field": "amount", "min": 5, "max": 1}]}',
            "min 5 is greater than max 1",
        ),
        (
            b'{"value_rules": [{"srv": "2.2", "field": "d", "max": 1, "max_days_ahead": 3}]}',
            "mixes min/max with max_days_ahead",
        ),
        (
            b'{"value_rules": [{"srv": "11.3", "field": "d", "max_days_ahead": -1}]}',
            "max_days_ahead must be",
        ),
        (b'{"value_rules": [{"srv": "*", "field": "amount", "max": 1}]}', "srv '\\*' is not"),
        (b'{"value_rules": [{"srv": "2.2", "field": "a.b", "max": 1}]}', "field 'a.b'"),
        (b'{"thresholds": [{"srv": "7.2", "window_s": 60, "max": 1, "id": "a b"}]}', "id 'a b'"),
        (
            b'{"thresholds": [{"srv": "7.2", "window_s": 60, "max": 1},'
            b' {"srv": "7.2", "window_s": 60, "max": 2}]}',
            r"thresholds\[0\] and thresholds\[1\] both count SRV 7.2 over 60 s",
        ),
        (
            b'{"exceptions": [{"id": "x", "start": "2025-06-01T00:00:00",'
            b' "end": "2025-06-02T00:00:00Z", "thresholds": {"a": 1}}]}',
            "with a time zone",
        ),
        (
            b'{"exceptions": [{"id": "x", "start": "2025-06-02T00:00:00Z",'
            b' "end": "2025-06-01T00:00:00Z", "thresholds": {"a": 1}}]}',
            "is not after start",
        ),
        (
            b'{"exceptions": [{"id": "x", "start": "2025-06-01T00:00:00Z",'
            b' "end": "2025-06-02T00:00:00Z", "thresholds": {}}]}',
            "raises no threshold",
        ),
        (b"[1, 2]", "Expected `object`"),
        (b"{not json", "not valid JSON"),
    ],
)
def test_bad_values_are_refused_naming_the_key(body: bytes, message: str) -> None:
    with pytest.raises(AdtConfigError, match=message) as info:
        decode_values(body)
    assert str(info.value).startswith("ADT values are not valid")


def test_decode_errors_carry_the_path() -> None:
    body = (
        b'{"thresholds": [{"srv": "7.2", "window_s": 60, "max": 1},'
        b' {"srv": "7.3", "window_s": 0, "max": 1}]}'
    )
    with pytest.raises(AdtConfigError, match=r"at `\$.thresholds\[1\]`"):
        decode_values(body)


def test_building_in_python_validates_too() -> None:
    with pytest.raises(AdtConfigError, match="window_s must be"):
        Threshold(srv="7.2", window_s=0, max=1)
    with pytest.raises(AdtConfigError, match="must be a finite number"):
        ValueRule(srv="2.2", field="amount", max=float("nan"))
    with pytest.raises(AdtConfigError, match="must be a finite number"):
        ValueRule(srv="2.2", field="amount", max=True)
    with pytest.raises(AdtConfigError, match="max must be"):
        Threshold(srv="7.2", window_s=60, max=True)


@pytest.mark.parametrize("limit", [10**400, -(10**400), 10**5000], ids=["401", "-401", "5001"])
def test_a_limit_beyond_a_float_is_a_config_error_not_an_overflow(limit: int) -> None:
    with pytest.raises(AdtConfigError, match="min must be a finite number, got an integer beyond"):
        ValueRule(srv="2.2", field="amount", min=limit)
    with pytest.raises(AdtConfigError, match="Number out of range"):
        decode_values(b'{"value_rules": [{"srv": "2.2", "field": "amount", "max": 1e400}]}')


def test_too_many_rules_are_refused() -> None:
    many = tuple(Threshold(srv="7.2", window_s=w, max=1) for w in range(1, 1002))
    with pytest.raises(AdtConfigError, match="at most 1000"):
        AdtValues(thresholds=many)


def test_at_most_four_window_lengths_per_srv_and_four_for_all_srvs() -> None:
    four = tuple(Threshold(srv="7.2", window_s=w, max=1) for w in (60, 600, 3600, 86400))
    star = tuple(Threshold(srv="*", window_s=w, max=1) for w in (60, 600, 3600, 86400))
    AdtTable.for_user(USER, AdtValues(thresholds=four + star))  # the most a key may have
    with pytest.raises(
        AdtConfigError,
        match=r"5 window lengths for SRV 7\.2 \(60, 600, 3600, 86400, 604800 s\); at most 4 per "
        r'SRV, and 4 for "\*"',
    ):
        AdtValues(thresholds=(*four, Threshold(srv="7.2", window_s=604800, max=1)))
    body = b'{"thresholds": [%s]}' % b", ".join(
        b'{"srv": "*", "window_s": %d, "max": 1}' % w for w in (1, 2, 3, 4, 5)
    )
    with pytest.raises(AdtConfigError, match=r'5 window lengths for all SRVs together \("\*"\)'):
        decode_values(body)


def test_at_most_four_value_rules_per_srv() -> None:
    fields = ("a", "b", "c", "d", "e")
    rules = tuple(ValueRule(srv="2.2", field=f, max=1) for f in fields)
    AdtValues(value_rules=rules[:4])
    with pytest.raises(AdtConfigError, match=r"value_rules: 5 rules for SRV 2\.2; at most 4 per"):
        AdtValues(value_rules=rules)


def test_the_caps_are_stated_in_the_schema() -> None:
    (_, components) = msgspec.json.schema_components([AdtValues])
    props = components["AdtValues"]["properties"]
    assert props["thresholds"]["maxItems"] == adt.config.MAX_RULES == 1000
    assert "at most 4 window lengths per SRV" in props["thresholds"]["description"]
    assert props["value_rules"]["maxItems"] == 1000
    assert "at most 4 per SRV" in props["value_rules"]["description"]
    assert props["exceptions"]["maxItems"] == adt.config.MAX_EXCEPTIONS
    exceptions = components["ExceptionWindow"]["properties"]["thresholds"]
    assert exceptions["maxProperties"] == 1000
    # Decoding refuses what the schema refuses, naming the key.
    many = b'{"thresholds": [%s]}' % b", ".join(
        b'{"srv": "%d.%d", "window_s": 60, "max": 1}' % (i // 100 + 1, i % 100) for i in range(1001)
    )
    with pytest.raises(AdtConfigError, match=r"length <= 1000 - at `\$.thresholds`"):
        decode_values(many)


def test_user_ids_are_derived_from_content() -> None:
    table = AdtTable.for_user(USER, decode_values(FULL_BODY))
    assert [r.id for r in table.count_rules] == [
        f"user:{USER}:7.2:3600",
        f"user:{USER}:*:86400",
        "fw-daily",
    ]
    assert [c.id for c in table.value_checks] == [
        f"user:{USER}:value:2.2:amount",
        f"user:{USER}:value:11.3:activation_datetime",
    ]


def test_dcc_ids_are_derived_from_content() -> None:
    values = AdtValues(
        thresholds=(Threshold(srv="7.2", window_s=86400, max=1000),),
        value_rules=(ValueRule(srv="2.2", field="amount", max=500),),
    )
    table = AdtTable.for_dcc(values)
    assert table.count_rules[0].id == "dcc:7.2:86400"
    assert table.count_rules[0].kind == "dcc_adt"
    assert table.value_checks[0].id == "value:2.2:amount"
    assert table.rule("value:2.2:amount") is table.value_checks[0]
    assert table.rule("nope") is None


def test_dcc_wide_thresholds_may_not_use_all_srvs() -> None:
    values = AdtValues(thresholds=(Threshold(srv="*", window_s=60, max=1),))
    AdtTable.for_user(USER, values)  # fine for a User
    with pytest.raises(AdtConfigError, match=r'srv "\*" is for User thresholds only'):
        AdtTable.for_dcc(values)


def test_duplicate_ids_are_refused() -> None:
    values = AdtValues(
        thresholds=(
            Threshold(srv="7.2", window_s=60, max=1, id="same"),
            Threshold(srv="7.3", window_s=60, max=1),
        ),
        value_rules=(ValueRule(srv="2.2", field="amount", max=1, id="same"),),
    )
    with pytest.raises(AdtConfigError, match=r"thresholds\[0\] and value_rules\[0\] have the"):
        AdtTable.for_dcc(values)


def test_a_rule_is_shadow_when_the_table_or_the_rule_says_so() -> None:
    rules = (
        Threshold(srv="7.2", window_s=60, max=1),
        Threshold(srv="7.3", window_s=60, max=1, shadow=True),
    )
    checks = (ValueRule(srv="2.2", field="amount", max=1),)
    table = AdtTable.for_dcc(AdtValues(thresholds=rules, value_rules=checks))
    assert [r.shadow for r in table.count_rules] == [False, True]
    assert not table.value_checks[0].shadow
    table = AdtTable.for_dcc(AdtValues(thresholds=rules, value_rules=checks, shadow=True))
    assert [r.shadow for r in table.count_rules] == [True, True]
    assert table.value_checks[0].shadow


def test_rules_are_grouped_by_srv_shortest_window_first() -> None:
    values = AdtValues(
        thresholds=(
            Threshold(srv="7.2", window_s=86400, max=3),
            Threshold(srv="7.2", window_s=60, max=1),
            Threshold(srv="7.2", window_s=3600, max=2),
        )
    )
    table = AdtTable.for_user(USER, values)
    assert [r.window_s for r in table.counts_by_srv["7.2"]] == [60, 3600, 86400]


def test_user_id_must_be_given() -> None:
    with pytest.raises(AdtConfigError, match="user_id must be"):
        AdtTable.for_user("", AdtValues())


def test_exception_window_needs_a_time_zone_in_python_too() -> None:
    with pytest.raises(AdtConfigError, match="time zone"):
        ExceptionWindow(
            id="x", start=datetime(2025, 1, 1), end=datetime(2025, 1, 2), thresholds={"a": 1}
        )


def test_values_are_frozen() -> None:
    values = AdtValues()
    with pytest.raises(AttributeError):
        values.shadow = True  # type: ignore[misc]
    assert msgspec.structs.replace(values, shadow=True).shadow


def test_the_module_docstring_example_is_valid() -> None:
    doc = adt.config.__doc__ or ""
    example = re.search(r"```json\n(.*?)```", doc, re.DOTALL)
    assert example is not None
    table = AdtTable.for_user("U", decode_values(example.group(1)))
    assert table.rule("user:U:11.1:86400") is not None
