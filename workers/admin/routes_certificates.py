"""The admin API's certificate registry: the X.509 certificates each User signs with.

`POST /v1/users/{user_id}/certificates` registers one (`{"pem", "usage", "role"}`; 201 with
its `fingerprint_sha256`), `GET` lists a User's, `DELETE .../{fingerprint}` revokes one.
Registering and revoking are operator acts, audited like every change of `dcc.control`
(the User's whole list is the item `certificates/<user_id>`).

The signing-key separation control (SEC Appendix AD clause 3.3.1) starts here: a public key
registered (by any User, even if since revoked) for one usage is refused for the other, and
each such refusal is counted per User and audited.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
from aiohttp import web

from broker.schemas import AuditRecord
from workers.admin.context import AdminContext
from workers.admin.routing import (
    WHO_OPERATOR,
    WHO_OWN_READ,
    ApiError,
    Route,
    json_answer,
    need_operator,
    need_user_access,
    read_body,
    user_id_param,
)
from workers.admin.tokens import Principal
from workers.config.model import KINDS
from workers.duis.certificates import (
    MAX_CERTIFICATES_PER_USER,
    CertificateEntry,
    CertificateError,
    UserCertificates,
    entry_from,
    parse_certificate,
)

__all__ = ["CERTIFICATE_ROUTES", "CertificateRegistration"]

_KIND = KINDS["certificates"]
_Role = Literal["IS", "ES", "GS", "ED", "GT", "RSA", "OU", "LC"]


class CertificateRegistration(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """`POST /v1/users/{user_id}/certificates`: a PEM certificate, its usage and role."""

    pem: str
    usage: Literal["xml-signing", "command-signing"]
    role: _Role


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _certificates(api: AdminContext, user_id: str) -> tuple[list[CertificateEntry], int]:
    item = api.reader.snapshot.get(_KIND.key(user_id))
    if item is None:
        return [], 0
    body: UserCertificates = item.body
    return list(body.certificates), item.version


def _answer(user_id: str, entry: CertificateEntry, now_ms: int) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(entry)
    doc["user_id"] = user_id
    if entry.revoked_at_ms is not None:
        doc["status"] = "revoked"
    elif now_ms < entry.not_before_ms:
        doc["status"] = "not yet valid"
    elif now_ms > entry.not_after_ms:
        doc["status"] = "expired"
    else:
        doc["status"] = "valid"
    return doc


async def _refuse_separation(
    api: AdminContext, principal: Principal, user_id: str, reason: str, fingerprint: str
) -> None:
    api.certificate_metrics.refusals.labels(user_id).inc()
    await api.writer.record(
        AuditRecord(
            at_ms=_now_ms(),
            by=principal.label(),
            action="certificate.refused",
            key=_KIND.key(user_id),
            new=msgspec.Raw(
                msgspec.json.encode({"reason": reason, "fingerprint_sha256": fingerprint})
            ),
        )
    )
    raise ApiError(409, reason)


async def _register(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    user_id = user_id_param(request)
    need_operator(principal)
    try:
        body = msgspec.convert(await read_body(request), CertificateRegistration)
    except msgspec.ValidationError as exc:
        raise ApiError(422, str(exc)) from None
    snapshot = api.reader.snapshot
    user = snapshot.get(KINDS["users"].key(user_id))
    if user is None:
        raise ApiError(404, f"no User {user_id}: PUT /v1/users/{user_id} first")
    if body.role not in user.body.roles:
        raise ApiError(
            422,
            f"User {user_id} is not registered for role {body.role} (its roles: "
            f"{', '.join(user.body.roles)}); a certificate signs in one of its User's roles",
        )
    try:
        parsed = parse_certificate(body.pem)
    except CertificateError as exc:
        raise ApiError(422, str(exc)) from None
    other_usage = "command-signing" if body.usage == "xml-signing" else "xml-signing"
    for owner, certs in snapshot.certificates.items():
        for entry in certs.certificates:
            if entry.fingerprint_sha256 == parsed.fingerprint_sha256 and owner != user_id:
                raise ApiError(409, f"this certificate is already registered to User {owner}")
            if entry.public_key_sha256 == parsed.public_key_sha256 and entry.usage == other_usage:
                await _refuse_separation(
                    api,
                    principal,
                    user_id,
                    f"this key is registered{' (revoked since)' if entry.revoked_at_ms else ''} "
                    f"for {other_usage} by User {owner} (certificate "
                    f"{entry.fingerprint_sha256[:16]}...); SEC Appendix AD 3.3.1 forbids one key "
                    f"for both XML and command signing: use a different key for {body.usage}",
                    parsed.fingerprint_sha256,
                )
    current, version = _certificates(api, user_id)
    if any(e.fingerprint_sha256 == parsed.fingerprint_sha256 for e in current):
        raise ApiError(
            409,
            f"certificate {parsed.fingerprint_sha256} is already registered to User {user_id}",
        )
    if len(current) >= MAX_CERTIFICATES_PER_USER:
        raise ApiError(
            409,
            f"User {user_id} has {len(current)} registrations, the most kept; revoked ones stay "
            "(they hold the key-separation record), so ask an operator to archive the User",
        )
    now_ms = _now_ms()
    entry = entry_from(
        parsed, pem=body.pem, usage=body.usage, role=body.role, by=principal.label(), now_ms=now_ms
    )
    await api.writer.put(
        _KIND.key(user_id),
        UserCertificates(certificates=[*current, entry]),
        by=principal.label(),
        expected_version=version,
    )
    return json_answer(_answer(user_id, entry, now_ms), status=201)


async def _list(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    user_id = user_id_param(request)
    need_user_access(principal, user_id)
    current, _ = _certificates(api, user_id)
    now_ms = _now_ms()
    return json_answer({"certificates": [_answer(user_id, e, now_ms) for e in current]})


async def _revoke(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    user_id = user_id_param(request)
    need_operator(principal)
    fingerprint = request.match_info["fingerprint"].lower()
    current, version = _certificates(api, user_id)
    found = [i for i, e in enumerate(current) if e.fingerprint_sha256 == fingerprint]
    if not found:
        raise ApiError(404, f"User {user_id} has no certificate {fingerprint[:64]!r}")
    i = found[0]
    entry = current[i]
    if entry.revoked_at_ms is not None:
        raise ApiError(409, f"certificate {fingerprint} was revoked at {entry.revoked_at_ms}")
    now_ms = _now_ms()
    revoked = msgspec.structs.replace(entry, revoked_at_ms=now_ms, revoked_by=principal.label())
    current[i] = revoked
    await api.writer.put(
        _KIND.key(user_id),
        UserCertificates(certificates=current),
        by=principal.label(),
        expected_version=version,
    )
    return json_answer(_answer(user_id, revoked, now_ms))


CERTIFICATE_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/users/{user_id}/certificates",
        _list,
        "List a User's registered signing certificates (revoked ones included)",
        WHO_OWN_READ,
    ),
    Route(
        "POST",
        "/v1/users/{user_id}/certificates",
        _register,
        "Register a signing certificate (xml-signing or command-signing) for one of the "
        "User's roles; 201 with its fingerprint_sha256",
        WHO_OPERATOR,
        body=CertificateRegistration,
        errors=(
            ("404", "no such User"),
            ("409", "already registered, or the key is registered for the other usage"),
        ),
    ),
    Route(
        "DELETE",
        "/v1/users/{user_id}/certificates/{fingerprint}",
        _revoke,
        "Revoke a registered certificate (kept, marked revoked)",
        WHO_OPERATOR,
        errors=(("404", "no such certificate"), ("409", "already revoked")),
    ),
)
