"""`dccgate send --xml FILE... --key KEY --cert CERT`: sign DUIS requests and submit them
through the DUIS ingress, printing each synchronous answer.

Each file is one DUIS `sr:Request`. It is signed as DUIS does (enveloped XML-DSig,
exclusive C14N, ECDSA P-256/SHA-256, the certificate named by X509IssuerSerial; any
signature already there is replaced) and POSTed to the web service its Command Variant
belongs to (`serviceD`, `serviceS` or `serviceT`). With `--gbcs-key`, the GBCS command of a
Signed Pre-Command (CV 5-7) is signed with that key first: the User's command-signing key.
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from workers.duis.signature import sign_gbcs, sign_request
from workers.duis.xml_request import DUIS_NS, web_service_for

__all__ = ["add_xml_arguments", "run_send_xml", "submit"]

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_DG = "urn:dccgate:response:1"


def add_xml_arguments(send: argparse.ArgumentParser) -> None:
    """The `--xml` flags of `dccgate send`."""
    send.add_argument(
        "--xml", nargs="+", type=Path, metavar="FILE", help="DUIS XML requests to sign and submit"
    )
    send.add_argument("--key", type=Path, help="PEM private key that signs the XML (--xml)")
    send.add_argument("--cert", type=Path, help="PEM certificate of --key (--xml)")
    send.add_argument(
        "--gbcs-key",
        type=Path,
        help="PEM command-signing key: sign the GBCS command of Signed Pre-Commands (CV 5-7)",
    )
    send.add_argument(
        "--url",
        default="http://127.0.0.1:8081",
        help="the DUIS ingress (default http://127.0.0.1:8081)",
    )
    send.add_argument("--ca", type=Path, help="PEM CA to trust for an https --url")


def _key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an ECDSA private key; DUIS signs with ECDSA P-256")
    return key


def _sign_pre_command(xml: bytes, gbcs_key: ec.EllipticCurvePrivateKey) -> bytes:
    root = etree.fromstring(xml, _PARSER)
    payload = root.find(f"{{{DUIS_NS}}}Body/{{{DUIS_NS}}}SignedPreCommand/{{{DUIS_NS}}}GBCSPayload")
    if payload is None:
        return xml
    command = base64.b64decode((payload.text or "").strip())
    payload.text = base64.b64encode(sign_gbcs(command, gbcs_key)).decode("ascii")
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def _service(xml: bytes) -> str:
    root = etree.fromstring(xml, _PARSER)
    cv = root.findtext(f"{{{DUIS_NS}}}Header/{{{DUIS_NS}}}CommandVariant")
    service = web_service_for(int(cv)) if cv and cv.strip().isdigit() else None
    if service is None:
        raise ValueError(f"CommandVariant {cv!r} is not 1-8: cannot tell which web service")
    return service


def submit(url: str, service: str, body: bytes, context: ssl.SSLContext | None) -> dict[str, Any]:
    """POST one signed request; the answer's HTTP status and sr:Response fields."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url {url!r} must start with http:// or https://")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        f"{url.rstrip('/')}/api/v1/{service}",
        data=body,
        headers={"Content-Type": "application/xml"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as answer:  # noqa: S310
            status, document = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, document = exc.code, exc.read()
    root = etree.fromstring(document, _PARSER)
    header = root.find(f"{{{DUIS_NS}}}Header")
    details = {d.get("name"): d.text or "" for d in root.iter(f"{{{_DG}}}Detail")}
    return {
        "http_status": status,
        "request_id": header.findtext(f"{{{DUIS_NS}}}RequestID") if header is not None else None,
        "response_id": header.findtext(f"{{{DUIS_NS}}}ResponseID") if header is not None else None,
        "response_code": header.findtext(f"{{{DUIS_NS}}}ResponseCode")
        if header is not None
        else None,
        "reason": root.findtext(f".//{{{_DG}}}Reason"),
        **details,
    }


def run_send_xml(args: argparse.Namespace) -> int:
    """Sign and submit each `--xml` file; print its answer. Exit 0 when every request got
    an answer (whatever its code), 1 when one could not be sent or read."""
    if args.key is None or args.cert is None:
        sys.stderr.write("dccgate send --xml needs --key KEY and --cert CERT\n")
        return 2
    key = _key(args.key)
    cert = x509.load_pem_x509_certificate(args.cert.read_bytes())
    gbcs_key = _key(args.gbcs_key) if args.gbcs_key else None
    context = None
    if args.url.startswith("https"):
        context = ssl.create_default_context(cafile=str(args.ca) if args.ca else None)
    failed = 0
    for path in args.xml:
        try:
            xml = path.read_bytes()
            if gbcs_key is not None:
                xml = _sign_pre_command(xml, gbcs_key)
            answer = submit(args.url, _service(xml), sign_request(xml, key, cert), context)
        except (OSError, ValueError, etree.XMLSyntaxError) as exc:
            sys.stderr.write(f"{path}: not sent or not answered: {exc}\n")
            failed += 1
            continue
        if args.json:
            print(json.dumps({"file": str(path), **answer}))
        else:
            print(
                f"{path}: HTTP {answer['http_status']} {answer['response_code']} "
                f"{answer.get('outcome', '')} {answer['request_id']}\n    {answer['reason']}"
            )
    return 1 if failed else 0
