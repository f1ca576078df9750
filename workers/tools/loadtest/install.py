"""The Install & Commission sequence as a state machine (DOMAIN.md section 2.4), pure.

A `Flow` walks a list of steps the way an installer's system does: it sends a step, waits
for the gateway's answer on `dcc.user.responses` and for the device's (or the DCC's)
answer, and only then sends the next step. A critical step is two submissions: CV 4 to
Transform, whose answer is the Pre-Command, then the signed CV 5 to the meter. A throttled
submission is sent again, with the same RequestID, after `retry_after_ms`; a rejection, a
quarantine, a device failure or a missing answer fails the flow, naming the step.

No I/O, no clock, no randomness: time and answers are passed in, and the runner turns the
returned actions into Kafka records. The same machine runs firmware campaigns
(`firmware_steps`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DCC_ID",
    "INSTALL_STEPS",
    "WAN_COMMANDS",
    "Finished",
    "Flow",
    "Resend",
    "Step",
    "Submission",
    "Submit",
    "firmware_steps",
]

DCC_ID = "90-B3-D5-1F-30-00-00-02"
"""The DCC's own ID, the target of non-device requests (as in the DUIS templates)."""

Target = Literal["chf", "esme", "gsme", "dcc"]


@dataclass(frozen=True, slots=True)
class Step:
    """One step: an SRV sent by `role` to one of the site's devices (or the DCC).

    kind: `device` (CV 1), `critical` (CV 4 then CV 5) or `non_device` (CV 8).
    """

    name: str
    srv: str
    role: str
    target: Target
    kind: Literal["device", "critical", "non_device"]
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def command_variants(self) -> tuple[int, ...]:
        """The submissions of this step, in order."""
        if self.kind == "critical":
            return (4, 5)
        return (8,) if self.kind == "non_device" else (1,)


# DOMAIN.md 2.4, a dual-fuel SMETS2 install (its order is marked UNCERTAIN there): 17 steps,
# 23 submissions; the 13 CV 1 and CV 5 submissions go over the SM WAN to a device.
INSTALL_STEPS: tuple[Step, ...] = (
    Step("12.2 pre-notify ESME", "12.2", "IS", "dcc", "non_device"),
    Step("12.2 pre-notify GSME", "12.2", "GS", "dcc", "non_device"),
    Step("8.14.1 hub installed", "8.14.1", "IS", "dcc", "non_device"),
    Step("8.11 HAN log add ESME", "8.11", "IS", "chf", "device"),
    Step("8.1.1 commission ESME", "8.1.1", "IS", "esme", "critical"),
    Step("6.15.1 credentials ESME", "6.15.1", "IS", "esme", "critical"),
    Step("6.20.1 set MPAN", "6.20.1", "IS", "esme", "device"),
    Step("6.22 alert behaviour", "6.22", "IS", "esme", "device"),
    Step("1.6 payment mode", "1.6", "IS", "esme", "critical"),
    Step("1.1.1 tariff", "1.1.1", "IS", "esme", "critical", {"price": 0.245}),
    Step("8.11 HAN log add GSME", "8.11", "GS", "chf", "device"),
    Step("8.7.1 join GSME", "8.7.1", "GS", "gsme", "critical"),
    Step("8.1.1 commission GSME", "8.1.1", "GS", "gsme", "critical"),
    Step("6.20.1 set MPRN", "6.20.1", "GS", "gsme", "device"),
    Step("4.1.1 verify registers", "4.1.1", "IS", "esme", "device"),
    Step("4.8.1 verify profile", "4.8.1", "IS", "esme", "device"),
    Step("8.2 verify inventory", "8.2", "IS", "dcc", "non_device"),
)

WAN_COMMANDS = sum(1 for s in INSTALL_STEPS for cv in s.command_variants if cv in (1, 5))
"""Device commands of one install: the per-command failure probability of a region is
derived from its install failure rate over this many."""


def firmware_steps(activation_datetime: str) -> tuple[Step, ...]:
    """A firmware campaign on one meter: 11.1 Update Firmware, then 11.3 Activate Firmware."""
    return (
        Step("11.1 update firmware", "11.1", "IS", "esme", "non_device"),
        Step(
            "11.3 activate firmware",
            "11.3",
            "IS",
            "esme",
            "critical",
            {"activation_datetime": activation_datetime},
        ),
    )


@dataclass(frozen=True, slots=True)
class Submission:
    """What to send: the runner gives it a RequestID (a new COUNTER) and sends it."""

    step: Step
    command_variant: int


@dataclass(frozen=True, slots=True)
class Submit:
    """Send a new submission now."""

    submission: Submission


@dataclass(frozen=True, slots=True)
class Resend:
    """Send the current submission again, same RequestID, at `at_s`."""

    at_s: float


@dataclass(frozen=True, slots=True)
class Finished:
    """The flow is over: ok, or the step that failed and why."""

    ok: bool
    failed_step: str | None = None
    reason: str | None = None


Action = Submit | Resend | Finished | None


class Flow:
    """One install (or one meter of a firmware campaign), step by step.

    steps: the sequence; step_timeout_s: how long a submission may wait for its answers;
    max_retries: throttled answers per submission before the flow fails.
    """

    __slots__ = (
        "_accepted",
        "_answered",
        "_cv_index",
        "_retries",
        "_step_index",
        "deadline_s",
        "finished",
        "max_retries",
        "step_timeout_s",
        "steps",
    )

    def __init__(
        self, steps: tuple[Step, ...], *, step_timeout_s: float = 10.0, max_retries: int = 20
    ) -> None:
        if not steps:
            raise ValueError("a flow needs at least one step")
        self.steps = steps
        self.step_timeout_s = step_timeout_s
        self.max_retries = max_retries
        self._step_index = 0
        self._cv_index = 0
        self._accepted = False
        self._answered = False
        self._retries = 0
        self.deadline_s = float("inf")
        self.finished: Finished | None = None

    @property
    def step(self) -> Step:
        """The step in progress."""
        return self.steps[self._step_index]

    @property
    def current(self) -> Submission:
        """The submission in progress."""
        return Submission(self.step, self.step.command_variants[self._cv_index])

    def start(self, now_s: float) -> Submit:
        """The first submission; call once."""
        self.deadline_s = now_s + self.step_timeout_s
        return Submit(self.current)

    def on_response(self, now_s: float, outcome: str, retry_after_ms: int | None) -> Action:
        """The gateway's answer to the current submission."""
        if self.finished is not None:
            return None
        if outcome in ("accepted", "released"):
            self._accepted = True
            return self._maybe_advance(now_s)
        if outcome == "throttled":
            self._retries += 1
            if self._retries > self.max_retries:
                return self._fail(f"throttled {self._retries} times")
            at_s = now_s + (retry_after_ms or 0) / 1000.0
            self.deadline_s = at_s + self.step_timeout_s
            return Resend(at_s)
        return self._fail(outcome)

    def on_device(self, now_s: float, ok: bool) -> Action:
        """The device's (or DCC's) answer to the current submission."""
        if self.finished is not None:
            return None
        if not ok:
            return self._fail("device failure")
        self._answered = True
        return self._maybe_advance(now_s)

    def on_tick(self, now_s: float) -> Action:
        """Fail the flow when the current submission is past its deadline."""
        if self.finished is None and now_s >= self.deadline_s:
            return self._fail("no answer")
        return None

    def _maybe_advance(self, now_s: float) -> Action:
        if not (self._accepted and self._answered):
            return None
        self._accepted = self._answered = False
        self._retries = 0
        self._cv_index += 1
        if self._cv_index >= len(self.step.command_variants):
            self._cv_index = 0
            self._step_index += 1
            if self._step_index >= len(self.steps):
                self.finished = Finished(ok=True)
                return self.finished
        self.deadline_s = now_s + self.step_timeout_s
        return Submit(self.current)

    def _fail(self, reason: str) -> Finished:
        self.finished = Finished(ok=False, failed_step=self.step.name, reason=reason)
        return self.finished
