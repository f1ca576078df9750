"""`dccgate admin certificates add|list|revoke` (the DUIS ingress's certificate registry)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.workers.tools.test_admin_cli import USER, FakeApi, run

PATH = f"/v1/users/{USER}/certificates"
FP = "ab" * 32
ENTRY = {
    "user_id": USER,
    "fingerprint_sha256": FP,
    "usage": "xml-signing",
    "role": "IS",
    "status": "valid",
    "issuer": "CN=test",
    "serial": "12",
}


def test_add_posts_the_pem_usage_and_role(tmp_path: Path) -> None:
    pem = tmp_path / "cert.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    api = FakeApi({("POST", PATH): (201, ENTRY)})
    ran = run(
        ["certificates", "add", USER, str(pem), "--usage", "xml-signing", "--role", "is"], api
    )
    assert ran.code == 0, ran.err
    [sent] = api.sent
    assert sent.body == {"pem": pem.read_text(), "usage": "xml-signing", "role": "IS"}
    assert f"FINGERPRINT  {FP}" in ran.out


def test_add_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    ran = run(
        [
            "certificates",
            "add",
            USER,
            str(tmp_path / "none.pem"),
            "--usage",
            "xml-signing",
            "--role",
            "IS",
        ],
        FakeApi(),
    )
    assert ran.code != 0
    assert "none.pem" in ran.err


def test_a_refused_registration_shows_the_reason(tmp_path: Path) -> None:
    pem = tmp_path / "cert.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    reason = "this key is registered for command-signing by User X; SEC Appendix AD 3.3.1"
    api = FakeApi({("POST", PATH): (409, {"error": reason})})
    ran = run(
        ["certificates", "add", USER, str(pem), "--usage", "xml-signing", "--role", "IS"], api
    )
    assert ran.code != 0
    assert "SEC Appendix AD 3.3.1" in ran.err


def test_list_and_revoke() -> None:
    revoked = {**ENTRY, "status": "revoked"}
    api = FakeApi(
        {
            ("GET", PATH): (200, {"certificates": [ENTRY, {**ENTRY, "usage": "command-signing"}]}),
            ("DELETE", f"{PATH}/{FP}"): (200, revoked),
        }
    )
    listed = run(["certificates", "list", USER], api)
    assert listed.code == 0, listed.err
    assert "xml-signing" in listed.out
    assert "command-signing" in listed.out
    gone = run(["certificates", "revoke", USER, FP], api)
    assert gone.code == 0, gone.err
    assert "STATUS       revoked" in gone.out
    assert api.sent[-1].method == "DELETE"
