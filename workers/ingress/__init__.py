"""The DUIS ingress: signed DUIS XML in over HTTP(S), checked, verified and published to
`dcc.sr.inbound`, with a synchronous `sr:Response` (docs/duis-ingress.md)."""

from workers.ingress.service import IngressService, build_ingress

__all__ = ["IngressService", "build_ingress"]
