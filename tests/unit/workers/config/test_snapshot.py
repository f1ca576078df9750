from __future__ import annotations

import msgspec
import pytest

from broker.schemas import ControlRecord
from workers.admin.tokens import authenticate, new_token
from workers.config.model import KINDS, Allocation, Traffic, kind_of_key, validate_item
from workers.config.snapshot import ConfigState
from workers.config.tokens import TokenRecord, hash_token

A = "90-B3-D5-1F-30-01-00-00"


def _record(key: str, version: int, body: object) -> bytes:
    return msgspec.json.encode(
        ControlRecord(
            key=key,
            version=version,
            value=msgspec.Raw(msgspec.json.encode(body)),
            by="operator:t",
            at_ms=1,
        )
    )


def test_last_record_per_key_wins_and_a_tombstone_deletes() -> None:
    state = ConfigState()
    key = f"allocations/{A}"
    state.apply(key.encode(), _record(key, 1, {"rate_per_s": 1, "burst": 1}), 0)
    state.apply(key.encode(), _record(key, 2, {"rate_per_s": 5, "burst": 9}), 1)
    snap = state.snapshot()
    assert snap.allocations == {A: Allocation(rate_per_s=5, burst=9)}
    assert snap.versions() == {key: 2}
    assert snap.offset == 2
    state.apply(key.encode(), None, 2)
    assert state.snapshot().allocations == {}
    assert snap.allocations == {A: Allocation(rate_per_s=5, burst=9)}  # snapshots are frozen


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"allocations/" + A.encode(), b"not json"),
        (b"allocations/" + A.encode(), _record(f"allocations/{A}", 1, {"rate_per_s": -1})),
        (b"nonsense", _record("nonsense", 1, {})),
        (None, b"{}"),
        (b"traffic", _record("allocations/x", 1, {})),  # key differs from the record's
    ],
)
def test_a_bad_record_is_skipped_and_the_previous_value_stays(
    key: bytes | None, value: bytes
) -> None:
    state = ConfigState()
    good = f"allocations/{A}"
    state.apply(good.encode(), _record(good, 1, {"rate_per_s": 1, "burst": 1}), 0)
    state.apply(key, value, 1)
    assert state.skipped == 1
    assert state.snapshot().allocations == {A: Allocation(rate_per_s=1, burst=1)}
    assert state.snapshot().offset == 2


def test_tokens_are_kept_and_authenticate_by_hash() -> None:
    token_id, token = new_token()
    record = TokenRecord(
        token_id=token_id,
        role="user",
        user_id=A,
        sha256=hash_token(token),
        created_at_ms=1,
        created_by="operator:bootstrap",
    )
    state = ConfigState()
    key = f"tokens/{token_id}"
    state.apply(key.encode(), _record(key, 1, record), 0)
    tokens = state.snapshot().tokens
    principal = authenticate(token, tokens, None)
    assert principal is not None
    assert (principal.role, principal.user_id) == ("user", A)
    assert principal.may_act_for(A)
    assert not principal.may_act_for("90-B3-D5-1F-30-02-00-00")
    assert authenticate(token + "x", tokens, None) is None
    assert authenticate("anything", tokens, hash_token("anything")).is_operator  # type: ignore[union-attr]
    state.apply(key.encode(), None, 1)
    assert authenticate(token, state.snapshot().tokens, None) is None


def test_keys_map_to_kinds() -> None:
    assert kind_of_key(f"allocations/{A}") is not None
    assert kind_of_key("traffic") is not None
    assert kind_of_key("traffic/x") is None
    assert kind_of_key("allocations") is None
    assert kind_of_key("allocations/90-b3-d5-1f-30-01-00-00") is None


@pytest.mark.parametrize(
    ("user_id", "body", "words"),
    [
        (None, {"thresholds": [{"srv": "*", "window_s": 60, "max": 5}]}, "*"),
        (A, {"value_rules": [{"srv": "2.2", "field": "amount", "min": 5, "max": 1}]}, "min"),
        (A, {"thresholds": [{"srv": "7.2", "window_s": 0, "max": 5}]}, "window_s"),
    ],
)
def test_adt_values_are_validated_for_their_owner(
    user_id: str | None, body: dict[str, object], words: str
) -> None:
    kind = KINDS["adt.users" if user_id else "adt.dcc"]
    with pytest.raises((msgspec.ValidationError, ValueError)) as info:
        validate_item(kind, user_id, msgspec.convert(body, type=kind.body))
    assert words in str(info.value)


def test_traffic_threshold_may_not_exceed_capacity() -> None:
    with pytest.raises(msgspec.ValidationError, match="must not exceed"):
        msgspec.convert({"capacity_per_s": 1, "operating_threshold_per_s": 2}, type=Traffic)
