"""workers.duis.catalogue: the packaged SRV catalogue and its loader's errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.schemas import USER_ROLES
from workers.duis.catalogue import CatalogueError, Srv, load_catalogue

ALL_ROLES = frozenset({"IS", "ES", "GS", "ED", "GT", "RSA", "OU"})

GOOD_ROW = """
[srv."4.1.1"]
name = "Read Instantaneous Import Registers"
body_element = "ReadInstantaneousImportRegisters"
critical = false
non_device = false
schedulable = false
roles = ["IS", "GS", "ED", "GT"]
"""


def write_catalogue(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalogue.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_packaged_catalogue_has_every_srv_of_the_request_matrix() -> None:
    catalogue = load_catalogue()
    # DOMAIN.md section 2.3: 129 SRVs, 37 critical, 16 non-device, 13 schedulable.
    assert len(catalogue) == 129
    assert sum(s.critical for s in catalogue.values()) == 37
    assert sum(s.non_device for s in catalogue.values()) == 16
    assert sum(s.schedulable for s in catalogue.values()) == 13


def test_packaged_schedulable_srvs_are_the_listed_thirteen() -> None:
    schedulable = {key for key, s in load_catalogue().items() if s.schedulable}
    assert schedulable == {
        "4.6.1",
        "4.6.2",
        "4.8.1",
        "4.8.2",
        "4.8.3",
        "4.10",
        "4.12.1",
        "4.12.2",
        "4.14",
        "4.15",
        "4.16",
        "4.17",
        "14.1",
    }


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "1.1.1",
            Srv(
                srv="1.1.1",
                name="Update Import Tariff (Primary Element)",
                body_element="UpdateImportTariffPrimaryElement",
                critical=True,
                non_device=False,
                schedulable=False,
                roles=frozenset({"IS", "GS"}),
            ),
        ),
        (
            "8.2",
            Srv(
                srv="8.2",
                name="Read Inventory",
                body_element="ReadInventory",
                critical=False,
                non_device=True,
                schedulable=False,
                roles=ALL_ROLES,
            ),
        ),
        (
            "7.16",
            Srv(
                srv="7.16",
                name="Limit APC Level",
                body_element="LimitAPCLevel",
                critical=True,
                non_device=False,
                schedulable=False,
                roles=frozenset({"LC"}),
            ),
        ),
        (
            "4.8.1",
            Srv(
                srv="4.8.1",
                name="Read Active Import Profile Data",
                body_element="ReadActiveImportProfileData",
                critical=False,
                non_device=False,
                schedulable=True,
                roles=frozenset({"IS", "GS", "ED", "GT", "OU"}),
            ),
        ),
        (
            "8.5",
            Srv(
                srv="8.5",
                name="Service Opt Out",
                body_element="ServiceOptOut",
                critical=False,
                non_device=False,
                schedulable=False,
                roles=frozenset({"IS"}),
            ),
        ),
        (
            "14.1",
            Srv(
                srv="14.1",
                name="Record Network Data (GAS)",
                body_element="RecordNetworkDataGAS",
                critical=False,
                non_device=False,
                schedulable=True,
                roles=frozenset({"GT"}),
            ),
        ),
        (
            "7.2",
            Srv(
                srv="7.2",
                name="Disable Supply",
                body_element="DisableSupply",
                critical=True,
                non_device=False,
                schedulable=False,
                roles=frozenset({"IS", "GS"}),
            ),
        ),
    ],
)
def test_packaged_rows_match_the_domain_brief(key: str, expected: Srv) -> None:
    assert load_catalogue()[key] == expected


def test_packaged_rows_are_consistent() -> None:
    for key, srv in load_catalogue().items():
        assert srv.srv == key
        assert srv.name
        assert srv.roles <= USER_ROLES
        # The CV rules assume no SRV is both critical and non-device.
        assert not (srv.critical and srv.non_device), key


def test_default_catalogue_is_loaded_once_and_read_only() -> None:
    catalogue = load_catalogue()
    assert load_catalogue() is catalogue
    with pytest.raises(TypeError):
        catalogue["9.9"] = catalogue["8.2"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("key", "variants"),
    [
        ("8.2", {8}),  # non-device
        ("12.2", {8}),
        ("1.1.1", {4, 5, 6, 7}),  # critical
        ("8.1.1", {4, 5, 6, 7}),
        ("4.1.1", {1, 2, 3}),  # non-critical device
        ("4.8.1", {1, 2, 3}),
    ],
)
def test_allowed_command_variants(key: str, variants: set[int]) -> None:
    assert load_catalogue()[key].allowed_command_variants == variants


def test_load_from_path(tmp_path: Path) -> None:
    catalogue = load_catalogue(write_catalogue(tmp_path, GOOD_ROW))
    assert list(catalogue) == ["4.1.1"]
    assert catalogue["4.1.1"].roles == {"IS", "GS", "ED", "GT"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD_ROW.replace("critical = false\n", ""),
            "SRV '4.1.1': Object missing required field `critical`",
        ),
        (
            GOOD_ROW.replace('"GT"]', '"GT", "XX"]'),
            "SRV '4.1.1': key 'roles' has unknown User Role(s) ['XX']",
        ),
        (
            GOOD_ROW.replace('"GT"]', '"GT", "IS"]'),
            "SRV '4.1.1': key 'roles' lists a User Role twice",
        ),
        (
            GOOD_ROW.replace("critical", "critcal"),
            "SRV '4.1.1': Object contains unknown field `critcal`",
        ),
        (
            GOOD_ROW.replace("critical = false", 'critical = "no"'),
            "SRV '4.1.1': Expected `bool`, got `str` - at `$.critical`",
        ),
        (
            GOOD_ROW.replace('name = "Read Instantaneous Import Registers"', 'name = ""'),
            "SRV '4.1.1': Expected `str` of length >= 1",
        ),
        (GOOD_ROW.replace('"4.1.1"', '"four"'), "SRV 'four': the key must look like"),
        ('[srv]\n"8.2" = 5\n', "SRV '8.2': Expected `object`, got `int`"),
        ("", "has no [srv."),
        ("[srv]\n", "has no [srv."),
        ('version = 1\n[srv."8.2"]\n', "unexpected top-level key(s) ['version']"),
        ("[srv.", "is not valid TOML"),
    ],
)
def test_malformed_catalogue_is_refused_with_a_clear_error(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write_catalogue(tmp_path, text)
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file_is_a_catalogue_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read SRV catalogue"):
        load_catalogue(tmp_path / "absent.toml")
