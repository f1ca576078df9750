from __future__ import annotations

from pathlib import Path

import pytest

from workers.config.configfile import ConfigFileError, load_config_file

EXAMPLE = Path(__file__).resolve().parents[4] / "docs" / "examples" / "dccgate.toml"


def test_the_shipped_example_loads() -> None:
    config = load_config_file(EXAMPLE)
    keys = set(config.items())
    assert "traffic" in keys
    assert "alerts.storm-policy" in keys
    assert "alerts.regional-capacity" in keys
    assert "alerts.mp102" in keys
    assert "users/90-B3-D5-1F-30-01-00-00" in keys
    assert config.admin.token_sha256 is not None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[users."90-B3"]\nname = "x"\nroles = ["IS"]\n', "'90-B3' is not a User ID"),
        ("[traffic]\ncapacity_per_s = 1\noperating_threshold_per_s = 2\n", "$.traffic"),
        (
            "[alerts.storm-policy]\ndefault = {window_s = 0, max_alerts = 1, period_s = 1}\n",
            "$.alerts.storm-policy.default.window_s",
        ),
        ("[trafic]\ncapacity_per_s = 1\n", "trafic"),
        (
            "[alerts.regional-capacity]\nregions = {mars = {rate_per_s = 1, burst = 1}}\n",
            "$.alerts.regional-capacity.regions",
        ),
        (
            "[alerts.regional-capacity]\nunknown_region = 'north'\n"
            "regions = {south = {rate_per_s = 1, burst = 1}}\n",
            "unknown_region 'north' has no capacity",
        ),
        ("[alerts.mp102]\nenabled = true\nhold_s = 0\n", "$.alerts.mp102.hold_s"),
        (
            "[alerts.mp102]\noutage_codes = ['AD1']\nrestore_codes = ['AD1']\n",
            "both outage_codes and restore_codes",
        ),
        ("[admin]\ntoken_sha256 = 'abc'\n", "64 lower-case hex"),
        ("this is = = not toml", "not valid TOML"),
        ('[users."90-B3-D5-1F-30-01-00-00"]\nname = "x"\nroles = ["XX"]\n', "roles"),
    ],
)
def test_errors_name_the_key_and_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as info:
        load_config_file(path)
    assert words in str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_config_file(tmp_path / "nope.toml")


def test_a_bad_region_in_a_file_is_named_with_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[alerts.regional-capacity.regions.west]\nrate_per_s = 10\nburst = 10\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config_file(path)
    message = str(caught.value)
    assert "Invalid enum value 'west'" in message
    assert "expected one of: central, north, south" in message
