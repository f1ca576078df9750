"""Coverage-guided fuzzing of what a hostile record's bytes meet first (issue 12, item 7).

The target feeds each input, as a record value, through the path a router and an alert
worker take before any I/O: `broker.wire_guard.json_problem`, the msgspec decoders of
`ServiceRequest` and `DeviceAlert`, DUIS validation, the body decoder and the ADT engine's
data-value checks (value rules on every SRV), storm protection, and the encoders of every
record those decisions write (answers, quarantine entries, storm copies). It asserts that
nothing raises but the documented errors and that the guard keeps its promises:

- `json_problem` never raises and answers None or a reason whose code is in REASON_CODES;
- after None the bytes are UTF-8, and if they are JSON they hold no duplicate key and no
  lone surrogate, and no decoder recurses past Python's limit;
- the decoders raise only `msgspec.DecodeError` (`ValidationError` is one);
  `ServiceRequest.body_values` likewise; the checks and encoders raise nothing at all.

Run it with atheris (libFuzzer), e.g. `make fuzz` (FUZZ_SECONDS=60), or by hand:

    .venv/bin/python fuzz/fuzz_decoders.py -max_total_time=60 -dict=fuzz/json.dict \\
        CORPUS_DIR fuzz/seeds

A failure prints the traceback and writes the input to `crash-<sha1>` (see
`-artifact_prefix`); replay it with `python fuzz/fuzz_decoders.py crash-<sha1>`. The suite
runs a bounded, seeded run on every `make test` (tests/fuzz/test_fuzz_decoders.py).
`check_one(data)` is the target itself, importable without atheris.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

try:
    import atheris  # type: ignore[import-untyped]  # no stubs in the dev extra
except ImportError:  # `check_one` works without it
    atheris = None

# Our own modules are instrumented for coverage (msgspec, prometheus_client... are not).
_instrumented = (
    atheris.instrument_imports(include=["broker", "adt", "throttling", "workers.duis"])
    if atheris is not None
    else contextlib.nullcontext()
)
with _instrumented:
    import msgspec

    from adt import AdtEngine, AdtValues, Breach, ValueRule
    from adt.table import AdtTable
    from broker.schemas import DeviceAlert, QuarantinedRequest, ServiceRequest, UserResponse
    from broker.wire_guard import REASON_CODES, json_problem, reason_code
    from throttling import StormGuard, StormParams, StormPolicy, normalize_alert_code
    from workers.alerts.processor import device_key
    from workers.duis import DuisValidator, Rejection, Validated, load_catalogue

USER = "90-B3-D5-1F-30-01-00-00"
ROLES = ["IS", "ES", "GS", "ED", "GT", "RSA", "OU"]
NOW_S = 1_800_000_000.0

_decode_request = msgspec.json.Decoder(ServiceRequest).decode
_decode_alert = msgspec.json.Decoder(DeviceAlert).decode
_decode_any = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

_CATALOGUE = load_catalogue()
_VALIDATOR = DuisValidator(_CATALOGUE, replay_pairs_per_user=1_000)
_VALIDATOR.set_users({USER: ROLES})
# Value rules on every SRV for the fields the fuzz seeds use (a User's own and DCC-wide),
# numeric and date, one in shadow mode: the engine decodes and checks any body it sees.
_RULES = [
    ValueRule(srv=srv, field=field, **limits)
    for srv in _CATALOGUE
    for field, limits in (
        ("amount", {"min": 0, "max": 500}),
        ("activation_datetime", {"max_days_ahead": 30}),
        ("price", {"min": -1e308, "max": 1e308, "shadow": True}),
    )
]
_ENGINE = AdtEngine(
    dcc_values=AdtValues(
        value_rules=tuple(ValueRule(srv=s, field="credit", min=-1, max=1) for s in _CATALOGUE)
    )
)
_ENGINE.set_user_values(USER, AdtValues(value_rules=tuple(_RULES)))
_CHECKS = [
    check
    for table in (_ENGINE.dcc_table, _ENGINE.user_table(USER))
    if table is not None
    for checks in table.values_by_srv.values()
    for check in checks
    if check.srv == "2.2"
]
_STORMS: StormGuard[DeviceAlert] = StormGuard(
    StormPolicy(default=StormParams(window_s=1, max_alerts=1, period_s=1)), max_keys=512
)
_clock = [NOW_S]


class _DuplicateKeyError(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _DuplicateKeyError(str(pairs)[:200])
    return dict(pairs)


def _refuse(name: str) -> Any:
    raise ValueError(name)


def check_one(data: bytes) -> None:
    """One input, as a record value: raise AssertionError (or the unexpected error) when a
    promise above is broken."""
    problem = json_problem(data)
    if problem is not None:
        assert isinstance(problem, str), problem
        assert reason_code(problem) in REASON_CODES, problem
        return
    text = data.decode()  # the guard promised UTF-8: UnicodeDecodeError here is a bug
    try:
        parsed = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse)
    except ValueError:
        pass  # not JSON (or NaN): the decoders refuse it, with their own error
    else:
        # A lone surrogate survives json.loads and cannot be encoded as UTF-8.
        json.dumps(parsed, ensure_ascii=False).encode()
    with contextlib.suppress(msgspec.DecodeError):
        _decode_any(data)
    try:
        request = _decode_request(data)
    except msgspec.DecodeError:
        pass
    else:
        _check_request(request, data)
    try:
        alert = _decode_alert(data)
    except msgspec.DecodeError:
        pass
    else:
        _check_alert(alert)


def _check_request(request: ServiceRequest, data: bytes) -> None:
    """DUIS validation, the body, the value rules, and the answers the router writes."""
    request.xml_is_string_or_null()
    for key in (USER, None):
        verdict = _VALIDATOR.check(request, key)
        assert isinstance(verdict, Validated | Rejection), verdict
        if isinstance(verdict, Rejection):
            _answer(request.request_id, key or "", "rejected", verdict.reason, verdict.kind)
    if not request.body_is_object():
        return
    try:
        body: dict[str, Any] | None = request.body_values()
    except msgspec.DecodeError as exc:  # the one documented error
        body = None
        why = str(exc)
    breaches: list[Breach] = []
    for check in _CHECKS:
        found = check.evaluate(body, NOW_S) if body is not None else check.unreadable(why)
        if found is not None:
            breaches.append(found)
    # The router passes a catalogue SRV only (after DUIS validation); so does this.
    srv = request.srv if request.srv in _CATALOGUE else "2.2"
    decision = _ENGINE.check(USER, srv, request.body_values, NOW_S)
    if decision.breach is not None:
        breaches.append(decision.breach)
    breaches.extend(decision.shadow_breaches)
    for breach in breaches:
        _quarantine(request, breach, data)


def _answer(request_id: str, user_id: str, outcome: Any, reason: str, rule: str) -> None:
    _encode(
        UserResponse(
            request_id=request_id,
            user_id=user_id,
            response_code="E1",
            outcome=outcome,
            reason=reason,
            rule=rule,
            at_ms=int(NOW_S * 1000),
        )
    )


def _quarantine(request: ServiceRequest, breach: Breach, data: bytes) -> None:
    """The quarantine entry and the answer, as the router encodes them."""
    _encode(
        QuarantinedRequest(
            id=request.request_id,
            user_id=USER,
            srv=request.srv,
            kind=breach.kind,
            rule=breach.rule,
            reason=breach.reason,
            at_s=NOW_S,
            observed=breach.observed,
            limit=breach.limit,
            response_code="Q3",
            request=msgspec.Raw(data),
        )
    )
    _answer(request.request_id, USER, "quarantined", breach.reason, breach.rule)


def _check_alert(alert: DeviceAlert) -> None:
    """What the alert worker does with a decoded alert before it writes it."""
    normalize_alert_code(alert.alert_code)
    device_key(alert.device_id)
    _clock[0] += 0.4
    _STORMS.decide(alert.device_id, alert.alert_code, alert, _clock[0])
    for copy in _STORMS.flush(_clock[0]):
        _encode(
            msgspec.structs.replace(
                copy.item,
                throttled_alert_count=copy.throttled_alert_count,
                throttled_alert_sequence_id=copy.throttled_alert_sequence_id,
            )
        )
    _encode(msgspec.structs.replace(alert, throttled_alert_count=None))


def _test_one_input(data: bytes) -> None:
    check_one(data)


def main() -> None:
    """Run the fuzzer (libFuzzer arguments on the command line)."""
    if atheris is None:
        sys.exit("atheris is not installed: .venv/bin/pip install -e '.[dev]'")
    assert AdtTable is not None  # imported under instrumentation for coverage of its module
    atheris.Setup(sys.argv, _test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
