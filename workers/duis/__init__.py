"""DUIS validation of inbound Service Requests (DOMAIN.md sections 2 and 3.2).

`load_catalogue` reads the Service Reference Variant catalogue, `parse_request_id` splits a
RequestID, and `DuisValidator` checks a request against both and against replay. All pure:
no I/O beyond reading the packaged catalogue, no clock.
"""

from workers.duis.catalogue import CatalogueError, Srv, load_catalogue
from workers.duis.request_id import (
    MAX_COUNTER,
    InvalidRequestIdError,
    RequestId,
    parse_request_id,
)
from workers.duis.validate import DuisValidator, Rejection, RejectKind, Validated

__all__ = [
    "MAX_COUNTER",
    "CatalogueError",
    "DuisValidator",
    "InvalidRequestIdError",
    "RejectKind",
    "Rejection",
    "RequestId",
    "Srv",
    "Validated",
    "load_catalogue",
    "parse_request_id",
]
