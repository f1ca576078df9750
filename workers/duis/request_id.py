"""DUIS RequestID parsing: `USER:TARGET:COUNTER` (DOMAIN.md section 2.1).

USER is the originating User's ID and TARGET the device ID (or a DCC ID for a non-device
request), both EUI-64 written as 8 hyphen-separated upper-case hex octets, e.g.
`90-B3-D5-1F-30-01-00-00`. COUNTER is a non-negative decimal integer; DCC Boxed uses epoch
milliseconds, so it is allowed up to 2**64 - 1.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "MAX_COUNTER",
    "PAIR_CHARS",
    "InvalidRequestIdError",
    "RequestId",
    "match_request_id",
    "parse_request_id",
    "request_id_problem",
    "shorten",
    "split_request_id",
]

MAX_COUNTER = 2**64 - 1
_MAX_COUNTER_DIGITS = len(str(MAX_COUNTER))  # 20
_SHOWN_CHARS = 80
_EUI64_HINT = "8 hyphen-separated upper-case hex octets like 90-B3-D5-1F-30-01-00-00"

# `[0-9]`, not `\d`: `\d` also matches non-ASCII digits, which int() would then accept.
# No leading zeros, so one counter has one spelling; 20 digits at most, so int() stays cheap
# and the value check in split_request_id is the only one that can fail after a match.
# The octets are spelled out rather than written `(?:-[0-9A-F]{2}){7}`: the re engine runs
# a repeated group about a third slower, and this runs once per message.
_HEX2 = "[0-9A-F][0-9A-F]"
_EUI64 = "-".join([_HEX2] * 8)
_COUNTER = rf"0|[1-9][0-9]{{0,{_MAX_COUNTER_DIGITS - 1}}}"
# Groups: pair "USER:TARGET", USER, TARGET, COUNTER.
_REQUEST_ID = re.compile(rf"(({_EUI64}):({_EUI64})):({_COUNTER})")
_EUI64_ONLY = re.compile(_EUI64)
PAIR_CHARS = 2 * len("90-B3-D5-1F-30-01-00-00") + 1
"""Length of the "USER:TARGET" part of every valid RequestID (47): both IDs are EUI-64s
written with a fixed width, so the COUNTER digits always start at PAIR_CHARS + 1."""
match_request_id = _REQUEST_ID.fullmatch
"""The match behind `split_request_id`, for a caller that cannot afford its call: groups
pair, USER, TARGET, COUNTER digits; a match's COUNTER may still exceed MAX_COUNTER."""
_LOWER_EUI64 = re.compile(_EUI64, re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+")


class InvalidRequestIdError(ValueError):
    """A RequestID is not `USER:TARGET:COUNTER`; `reason` says which part is wrong and how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RequestId(NamedTuple):
    """A parsed DUIS RequestID."""

    user_id: str
    target_id: str
    counter: int


def parse_request_id(text: str) -> RequestId:
    """Parse a DUIS RequestID `USER:TARGET:COUNTER`.

    Raises InvalidRequestIdError (never another exception) when `text` is not exactly in that
    format or COUNTER exceeds MAX_COUNTER (2**64 - 1).
    """
    parts = split_request_id(text)
    if parts is None:
        raise InvalidRequestIdError(request_id_problem(text))
    _, user_id, target_id, counter = parts
    return RequestId(user_id, target_id, counter)


def split_request_id(text: str) -> tuple[str, str, str, int] | None:
    """`(pair, user_id, target_id, counter)`, or None when `text` is not a valid RequestID.

    The per-message form of `parse_request_id`: no exception and no NamedTuple on either
    path, and pair ("USER:TARGET", the anti-replay key) comes from the same match instead of
    being formatted.
    Ask `request_id_problem(text)` for the reason after a None.
    """
    match = match_request_id(text)
    if match is None:
        return None
    pair, user_id, target_id, digits = match.groups()
    counter = int(digits)
    if counter > MAX_COUNTER:
        return None
    return pair, user_id, target_id, counter


def shorten(text: str) -> str:
    """`repr(text)`, cut to about 80 characters so that a hostile value cannot flood a log."""
    shown = repr(text[:_SHOWN_CHARS])
    if len(text) > _SHOWN_CHARS or len(shown) > _SHOWN_CHARS + 2:
        return shown[:_SHOWN_CHARS] + "..."
    return shown


def request_id_problem(text: str) -> str:
    """What is wrong with an invalid RequestID: which part, the value seen, what is expected.

    For the reject path only (it splits and re-scans `text`); "" when `text` is valid.
    """
    if not text:
        return "request_id is empty; expected USER:TARGET:COUNTER"
    parts = text.split(":")
    if len(parts) != 3:
        return (
            f"request_id {shorten(text)} has {len(parts)} colon-separated part(s); "
            "expected 3: USER:TARGET:COUNTER"
        )
    for label, part in (("USER", parts[0]), ("TARGET", parts[1])):
        if not _EUI64_ONLY.fullmatch(part):
            hint = " (lower-case hex is not accepted)" if _LOWER_EUI64.fullmatch(part) else ""
            return (
                f"request_id {label} part {shorten(part)} is not an EUI-64{hint}; "
                f"expected {_EUI64_HINT}"
            )
    counter = parts[2]
    if not _DIGITS.fullmatch(counter):
        return (
            f"request_id COUNTER part {shorten(counter)} is not a non-negative decimal "
            "integer; expected digits 0-9 only"
        )
    if len(counter) > 1 and counter[0] == "0":
        return (
            f"request_id COUNTER part {shorten(counter)} has a leading zero; "
            "write the number without leading zeros"
        )
    if len(counter) > _MAX_COUNTER_DIGITS or int(counter) > MAX_COUNTER:
        return (
            f"request_id COUNTER part {shorten(counter)} exceeds the maximum {MAX_COUNTER} "
            "(2**64 - 1)"
        )
    return ""
