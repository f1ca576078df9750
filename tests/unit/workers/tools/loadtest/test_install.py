"""The Install & Commission state machine: order, two-step critical SRs, retries, failures."""

from __future__ import annotations

from workers.duis import load_catalogue
from workers.tools.loadtest.install import (
    INSTALL_STEPS,
    WAN_COMMANDS,
    Action,
    Finished,
    Flow,
    Resend,
    Submit,
    firmware_steps,
)


def _run_ok(flow: Flow) -> list[tuple[str, int]]:
    """Answer every submission with accepted + device ok; the submissions in order."""
    sent: list[tuple[str, int]] = []
    action: Action = flow.start(0.0)
    t = 0.0
    while isinstance(action, Submit):
        sent.append((action.submission.step.srv, action.submission.command_variant))
        t += 0.1
        assert flow.on_device(t, ok=True) is None  # the device answer alone is not enough
        action = flow.on_response(t, "accepted", None)
    assert action == Finished(ok=True)
    return sent


def test_install_follows_the_domain_sequence() -> None:
    sent = _run_ok(Flow(INSTALL_STEPS))
    srvs = [srv for srv, _ in sent]
    assert srvs[:4] == ["12.2", "12.2", "8.14.1", "8.11"]
    # commissioning is critical: CV 4 to Transform, then the signed CV 5
    i = sent.index(("8.1.1", 4))
    assert sent[i + 1] == ("8.1.1", 5)
    assert srvs.index("6.15.1") < srvs.index("6.20.1") < srvs.index("6.22") < srvs.index("1.6")
    assert srvs.index("1.6") < srvs.index("1.1.1") < srvs.index("8.7.1")
    assert srvs[-3:] == ["4.1.1", "4.8.1", "8.2"]
    assert len(sent) == 23
    assert sum(1 for _, cv in sent if cv in (1, 5)) == WAN_COMMANDS == 13


def test_every_step_is_valid_duis() -> None:
    catalogue = load_catalogue()
    for step in (*INSTALL_STEPS, *firmware_steps("2026-12-01T00:00:00Z")):
        srv = catalogue[step.srv]
        assert step.role in srv.roles, step
        assert set(step.command_variants) <= srv.allowed_command_variants, step


def test_next_step_waits_for_both_answers_in_either_order() -> None:
    flow = Flow(INSTALL_STEPS)
    flow.start(0.0)
    assert flow.on_response(0.1, "accepted", None) is None
    action = flow.on_device(0.2, ok=True)
    assert isinstance(action, Submit)
    assert action.submission.step.name == "12.2 pre-notify GSME"


def test_throttled_is_retried_after_retry_after_then_fails_after_max_retries() -> None:
    flow = Flow(INSTALL_STEPS, max_retries=2)
    flow.start(0.0)
    assert flow.on_response(1.0, "throttled", 250) == Resend(1.25)
    assert flow.on_response(2.0, "throttled", 0) == Resend(2.0)
    action = flow.on_response(3.0, "throttled", 10)
    assert action == Finished(False, "12.2 pre-notify ESME", "throttled 3 times")


def test_retries_count_per_submission() -> None:
    flow = Flow(INSTALL_STEPS, max_retries=1)
    flow.start(0.0)
    assert isinstance(flow.on_response(0.0, "throttled", 10), Resend)
    flow.on_device(0.1, ok=True)
    assert isinstance(flow.on_response(0.2, "accepted", None), Submit)
    assert isinstance(flow.on_response(0.3, "throttled", 10), Resend)


def test_device_failure_fails_the_install_naming_the_step() -> None:
    flow = Flow(INSTALL_STEPS)
    action: Action = flow.start(0.0)
    while isinstance(action, Submit) and action.submission.step.srv != "8.1.1":
        flow.on_device(0.0, ok=True)
        action = flow.on_response(0.0, "accepted", None)
    assert isinstance(action, Submit)
    assert action.submission.command_variant == 4
    flow.on_device(0.0, ok=True)
    action = flow.on_response(0.0, "accepted", None)
    assert isinstance(action, Submit)
    assert action.submission.command_variant == 5
    assert flow.on_device(0.5, ok=False) == Finished(
        False, "8.1.1 commission ESME", "device failure"
    )
    assert flow.on_response(0.6, "accepted", None) is None  # late answers are ignored


def test_rejection_and_quarantine_fail_the_install() -> None:
    for outcome in ("rejected", "quarantined"):
        flow = Flow(INSTALL_STEPS)
        flow.start(0.0)
        assert flow.on_response(0.1, outcome, None) == Finished(
            False, "12.2 pre-notify ESME", outcome
        )


def test_no_answer_by_the_deadline_fails() -> None:
    flow = Flow(INSTALL_STEPS, step_timeout_s=5.0)
    flow.start(10.0)
    assert flow.on_tick(14.9) is None
    assert flow.on_tick(15.0) == Finished(False, "12.2 pre-notify ESME", "no answer")


def test_firmware_campaign_is_update_then_activate() -> None:
    sent = _run_ok(Flow(firmware_steps("2026-12-01T00:00:00Z")))
    assert sent == [("11.1", 8), ("11.3", 4), ("11.3", 5)]
