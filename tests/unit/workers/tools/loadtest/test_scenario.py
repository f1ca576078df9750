"""The scenario parser: built-ins load, and bad scenarios fail with clear messages."""

from __future__ import annotations

import pytest

from workers.tools.loadtest.scenario import BUILT_IN, ScenarioError, load_scenario, parse_scenario

GOOD = """
name = "t"
[[users]]
id = "90-B3-D5-1F-30-01-00-00"
roles = ["IS", "GS"]

[fleet]
supplier = "90-B3-D5-1F-30-01-00-00"

[installs]
user = "90-B3-D5-1F-30-01-00-00"

[regions.north]
installs_per_s = 2
install_failure_rate = 0.1667

[[faults.runaway_user]]
user = "90-B3-D5-1F-30-01-00-00"
srv = "7.2"
rate_per_s = 10
"""


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_scenario_loads(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.gateway_items()


def test_a_good_scenario_parses() -> None:
    s = parse_scenario(GOOD)
    assert s.regions.north.installs_per_s == 2
    assert s.faults.runaway_user[0].srv == "7.2"
    assert "users/90-B3-D5-1F-30-01-00-00" in s.gateway_items()


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="bad.toml")
    return str(info.value)


def test_unknown_field_is_named_with_its_line() -> None:
    text = GOOD.replace("install_failure_rate = 0.1667", "install_failure_rte = 0.1667")
    msg = _error(text)
    assert "unknown field `install_failure_rte`" in msg
    assert "line 15" in msg
    assert "bad.toml" in msg


def test_negative_rate_is_refused() -> None:
    msg = _error(GOOD.replace("installs_per_s = 2", "installs_per_s = -2"))
    assert "installs_per_s" in msg
    assert ">= 0" in msg
    assert "line 14" in msg


def test_rate_of_wrong_type_is_refused() -> None:
    msg = _error(GOOD.replace("rate_per_s = 10", 'rate_per_s = "fast"'))
    assert "rate_per_s" in msg
    assert "Expected `float`" in msg


def test_unknown_srv_is_refused() -> None:
    msg = _error(GOOD.replace('srv = "7.2"', 'srv = "7.99"'))
    assert "faults.runaway_user[0].srv: '7.99' is not a known DUIS Service Reference" in msg


def test_role_not_eligible_is_refused() -> None:
    msg = _error(GOOD.replace('srv = "7.2"', 'srv = "6.5"'))
    assert "none of which may send SRV 6.5" in msg
    assert "eligible: ED" in msg


def test_unknown_region_is_refused() -> None:
    msg = _error(GOOD.replace("[regions.north]", "[regions.west]"))
    assert "unknown field `west`" in msg
    assert "line 13" in msg


def test_unknown_user_is_refused() -> None:
    msg = _error(
        GOOD.replace(
            '[installs]\nuser = "90-B3-D5-1F-30-01-00-00"',
            '[installs]\nuser = "90-B3-D5-1F-30-09-00-00"',
        )
    )
    assert "installs.user: User 90-B3-D5-1F-30-09-00-00 is not in [[users]]" in msg


def test_bad_user_id_is_refused() -> None:
    msg = _error(GOOD.replace('id = "90-B3-D5-1F-30-01-00-00"', 'id = "90-b3"'))
    assert "users[0].id" in msg


def test_gateway_section_is_checked_like_a_config_file() -> None:
    msg = _error(
        GOOD + "\n[gateway.traffic]\ncapacity_per_s = 100\noperating_threshold_per_s = 200\n"
    )
    assert "operating_threshold_per_s (200) must not exceed capacity_per_s (100)" in msg


def test_gateway_unknown_key_is_refused() -> None:
    msg = _error(GOOD + "\n[gateway.trafic]\ncapacity_per_s = 100\n")
    assert "unknown field `trafic`" in msg


def test_installs_need_a_dual_fuel_user() -> None:
    msg = _error(GOOD.replace('roles = ["IS", "GS"]', 'roles = ["IS"]'))
    assert "needs roles IS and GS" in msg


def test_not_toml() -> None:
    assert "is not valid TOML" in _error("name = ")


def test_unknown_built_in_or_missing_file() -> None:
    with pytest.raises(ScenarioError, match="neither a built-in scenario"):
        load_scenario("install-night")
