"""workers.ingress.codes: every refusal the ingress can make has a code and an HTTP status."""

from __future__ import annotations

from typing import get_args

from workers.duis.signature import SignatureKind
from workers.duis.xml_request import RefusalKind
from workers.ingress.codes import REFUSALS


def test_every_check_has_a_code_and_a_status() -> None:
    for kind in (*get_args(RefusalKind), *get_args(SignatureKind)):
        code, status = REFUSALS[kind]
        assert code.startswith("E")
        assert 400 <= status < 500


def test_identity_failures_are_duis_e1_and_separation_has_its_own_code() -> None:
    identity = ("signature_invalid", "certificate_unknown", "certificate_not_originators")
    assert {REFUSALS[k] for k in identity} == {("E1", 403)}
    assert REFUSALS["key_separation"] == ("E106", 403)
    assert REFUSALS["wrong_web_service"][0] == "E13"
