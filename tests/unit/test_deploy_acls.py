"""deploy/kafka/acls.py (the ACLs of each process) and kafka.py's --secure configuration."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from broker.topics import TOPIC_NAMES
from tests.integration.brokers import kafka_launcher

KAFKA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
ACLS_MD = KAFKA_DIR / "ACLS.md"


def _load_acls() -> ModuleType:
    """deploy/kafka/acls.py as a module (deploy/ is not a package)."""
    name = "dccgate_kafka_acls"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, KAFKA_DIR / "acls.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_acls_md_holds_the_generated_table() -> None:
    text = ACLS_MD.read_text()
    found = re.search(r"<!-- acls-table:[^>]*-->\n(.*?)\n<!-- /acls-table -->", text, re.S)
    assert found is not None, "ACLS.md lost its generated-table markers"
    assert found.group(1) == _load_acls().table(), (
        "deploy/kafka/ACLS.md is out of date: paste `deploy/kafka/acls.py table` between "
        "the markers"
    )


def test_every_contract_topic_is_read_and_written_by_some_role() -> None:
    acls = _load_acls()
    reads = {name for role in acls.ROLES for name in role.reads}
    writes = {name for role in acls.ROLES for name in role.writes}
    assert set(TOPIC_NAMES) - reads == set(), "a topic nobody may read"
    assert set(TOPIC_NAMES) - writes == set(), "a topic nobody may write"


def test_only_ingress_may_write_service_requests() -> None:
    acls = _load_acls()
    entries = acls.acl_entries("p.", {})
    writers = {
        e[0] for e in entries if e[1:] == (acls.TOPIC, "p.dcc.sr.inbound", acls.LITERAL, acls.WRITE)
    }
    assert writers == {"User:dccgate-ingress"}


def test_entries_carry_the_prefix_and_the_chosen_principals() -> None:
    acls = _load_acls()
    entries = acls.acl_entries("p.", {"router": "User:CN=r"})
    principals = {e[0] for e in entries}
    assert "User:CN=r" in principals
    assert "User:dccgate-router" not in principals
    groups = {(e[2], e[3]) for e in entries if e[1] == acls.GROUP}
    assert ("p.dccgate-router", acls.LITERAL) in groups
    assert ("p.ingress-", acls.PREFIXED) in groups
    tids = {(e[2], e[3]) for e in entries if e[1] == acls.TRANSACTIONAL_ID}
    assert ("p.dccgate-router.", acls.PREFIXED) in tids
    assert ("p.dccgate-quarantine", acls.LITERAL) in tids
    assert ("p.dccgate.probe.", acls.PREFIXED) in tids  # the probe's ids carry it too
    topics = {e[2] for e in entries if e[1] == acls.TOPIC}
    assert all(name.startswith("p.dcc.") for name in topics)


def test_commands_are_kafka_acls_invocations() -> None:
    lines = _load_acls().commands("", {}, "k:9093")
    assert len(lines) == len(_load_acls().acl_entries("", {}))
    assert any(
        "--allow-principal User:dccgate-ingress --operation Write --topic dcc.sr.inbound" in line
        for line in lines
    )
    assert any("--resource-pattern-type prefixed" in line for line in lines)


def test_a_bad_principal_option_is_refused() -> None:
    with pytest.raises(SystemExit, match="ROLE=User:NAME"):
        _load_acls().main(["commands", "--principal", "router=alice"])


def _secure_dir(tmp_path: Path, users: object) -> Path:
    for name in ("ca.pem", "server.pem"):
        (tmp_path / name).write_text("x")
    (tmp_path / "users.json").write_text(json.dumps(users))
    return tmp_path


def test_a_secured_node_listens_sasl_ssl_with_acls(tmp_path: Path) -> None:
    launcher = kafka_launcher()
    secure = _secure_dir(tmp_path, {"admin": "admin-secret-1", "dccgate-router": "r-secret-1"})
    cluster = launcher.Cluster(
        version="4.4.0",
        cluster_id="x",
        broker_ports=[1],
        controller_ports=[2],
        secure_dir=str(secure),
    )
    props = launcher.server_properties(cluster, 1, tmp_path / "node-1")
    assert "listeners=SASL_SSL://127.0.0.1:1,CONTROLLER://127.0.0.1:2" in props
    assert "PLAINTEXT://" not in props
    assert "allow.everyone.if.no.acl.found=false" in props
    assert "super.users=User:admin\n" in props
    assert 'user_dccgate-router="r-secret-1"' in props
    args = launcher._scram_args(cluster)
    assert "SCRAM-SHA-512=[name=dccgate-router,password=r-secret-1]" in args
    # The plaintext default is unchanged.
    plain = launcher.Cluster(
        version="4.4.0", cluster_id="x", broker_ports=[1], controller_ports=[2]
    )
    assert "listeners=PLAINTEXT://127.0.0.1:1," in launcher.server_properties(plain, 1, tmp_path)
    assert launcher._scram_args(plain) == []


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ({"router": "long-enough-1"}, "must name the super user admin"),
        (["admin"], "must be an object"),
        ({"admin": "short"}, "passwords 8 to 128"),
        ({"admin": "admin-secret-1", 'x"y': "long-enough-1"}, "names are letters"),
        ({"admin": 'quote"in-password'}, "passwords 8 to 128"),
    ],
)
def test_bad_user_files_are_refused(tmp_path: Path, users: object, message: str) -> None:
    launcher = kafka_launcher()
    with pytest.raises(launcher.KafkaSetupError, match=message):
        launcher.secure_users(_secure_dir(tmp_path, users))


def test_a_missing_secure_file_is_named(tmp_path: Path) -> None:
    launcher = kafka_launcher()
    with pytest.raises(
        launcher.KafkaSetupError, match=r"missing ca\.pem, server\.pem, users\.json"
    ):
        launcher.secure_users(tmp_path)
