"""Response codes sent to Users, with the documented defaults (docs/contract.md).

DUIS codes are used where our sources name them (I99, E1, E2, E12). The DUIS codes for
throttling and quarantine, and for the checks DUIS does elsewhere (RequestID format,
unknown SRV, replayed counter), are not public in our sources, so dccgate picks its own
defaults: `T1`, `Q1`-`Q5`, and `E100`-`E102`, numbered away from DUIS's own E codes.
A deployment maps any of them in configuration.
"""

from __future__ import annotations

import msgspec

from workers.duis import RejectKind

__all__ = ["ResponseCodes"]


class ResponseCodes(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The code string per outcome or rejection kind."""

    accepted: str = "I99"
    invalid_request_id: str = "E100"
    user_mismatch: str = "E1"
    unknown_user: str = "E1"
    invalid_role: str = "E1"
    role_not_held: str = "E1"
    unknown_srv: str = "E101"
    role_not_eligible: str = "E2"
    invalid_command_variant: str = "E12"
    replayed_counter: str = "E102"
    throttled: str = "T1"
    quarantined_user_adt: str = "Q1"
    quarantined_dcc_adt: str = "Q2"
    quarantined_data_value: str = "Q3"
    released: str = "Q4"
    deleted: str = "Q5"

    def for_rejection(self, kind: RejectKind) -> str:
        """The code for a DUIS validation failure of `kind`."""
        code: str = getattr(self, kind)
        return code
