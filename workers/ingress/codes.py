"""What the ingress answers for each refusal: a DUIS-style response code and an HTTP status.

DUIS's own codes are used where they fit (DOMAIN.md section 3.2): E1 (invalid User / User
Role: the signature does not establish who sent it), E12 (Command Variant not valid for the
request), E13 (request not valid for the web service it was sent to). The router's own
codes are reused for the same failures (E100 RequestID, E101 unknown SRV, E102 replay; see
`workers.config.codes`). The rest are dccgate's, numbered after the router's:

- E103: not a readable DUIS request (size, UTF-8, well-formedness, DTD or entities,
  namespace and root, schemaVersion, header fields);
- E104: ServiceReference inconsistent with ServiceReferenceVariant;
- E105: the body element is not the one the SRV (or a Signed Pre-Command) carries;
- E106: the signing-key separation control refused it (SEC Appendix AD 3.3.1);
- E107: the gateway could not queue the request (Kafka did not acknowledge): retry.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["PENDING_CODE", "REFUSALS", "Refusal"]

Refusal = tuple[str, int]
"""(response code, HTTP status)."""

REFUSALS: Mapping[str, Refusal] = {
    # workers.duis.xml_request.RefusalKind
    "too_large": ("E103", 413),
    "unsupported_media_type": ("E103", 415),
    "malformed_xml": ("E103", 400),
    "unsupported_schema_version": ("E103", 400),
    "invalid_request_id": ("E100", 400),
    "unknown_srv": ("E101", 400),
    "wrong_web_service": ("E13", 400),
    "invalid_command_variant": ("E12", 400),
    "service_reference_mismatch": ("E104", 400),
    "wrong_body_element": ("E105", 400),
    # workers.duis.signature.SignatureKind
    "signature_invalid": ("E1", 403),
    "certificate_unknown": ("E1", 403),
    "certificate_not_originators": ("E1", 403),
    "certificate_revoked": ("E1", 403),
    "certificate_expired": ("E1", 403),
    "key_separation": ("E106", 403),
    # the ingress itself
    "in_flight": ("E102", 409),
    "unavailable": ("E107", 503),
}

PENDING_CODE = "I99"
"""The answer when the router's decision has not come within the wait: DUIS's own
acknowledgement, I99, "accepted; the response follows asynchronously" (DOMAIN.md section
3.1), with `dg:Detail name="outcome"` `pending` telling it apart from a router decision."""
