"""Side tasks under supervision: what runs beside a service's loop, and whether it is well.

A service's consume-process-produce loop is not all it runs: the router exchanges load
reports on `dcc.load` (SECMP0067's system view and the DCC-wide ADT counts), every service
follows `dcc.control`, the alert worker follows the 11.3 activations MP102 needs, the admin
process follows the quarantine log and the audit trail. If one of them fails silently, the
service goes on deciding with a frozen view while `/healthz` says all is well.

`SideTasks` is the one place they report to:

- `supervise(name, run, stop)` runs a coroutine until `stop`, and when it raises (anything
  but cancellation), logs it, counts it in `dccgate_side_task_failures_total{task}`, marks
  the task unwell and starts it again after a backoff that doubles from
  `INITIAL_BACKOFF_S` to `MAX_BACKOFF_S`;
- a task that retries by itself (a publish that failed) calls `failed(name, exc)` and,
  once it works again, `recovered(name)`;
- `watch(name, probe)` adds a task whose state is read at scrape time (a topic follower's
  `problem`).

`problems()` is what `/healthz` shows under `side_tasks`; while it is not empty the answer is
503, so an orchestrator (or an operator) sees what is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["INITIAL_BACKOFF_S", "MAX_BACKOFF_S", "SideTasks"]

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
_PROBLEM_CHARS = 300


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _PROBLEM_CHARS else text[: _PROBLEM_CHARS - 3] + "..."


class SideTasks:
    """The side tasks of one process, their failures and their current problems."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._problems: dict[str, str] = {}
        self._probes: dict[str, Callable[[], str | None]] = {}
        self._failures = Counter(
            "dccgate_side_task_failures",
            "Failures of a side task (load exchange, topic followers, ...); each is retried "
            "with backoff.",
            ["task"],
            registry=registry,
        )
        self._unwell = Gauge(
            "dccgate_side_task_unwell",
            "1 while a side task cannot do its work (then /healthz answers 503), else 0.",
            ["task"],
            registry=registry,
        )

    def watch(self, name: str, probe: Callable[[], str | None]) -> None:
        """Report `probe()` (a problem, or None when well) as task `name`'s state."""
        self._probes[name] = probe
        self._unwell.labels(name).set(0)

    def failed(self, name: str, exc: BaseException) -> None:
        """Task `name` failed with `exc`: count it, log it, and keep it as its problem."""
        problem = _describe(exc)
        if self._problems.get(name) != problem:
            log.error("side task %s failed: %s", name, problem)
        self._problems[name] = problem
        self._failures.labels(name).inc()
        self._unwell.labels(name).set(1)

    def recovered(self, name: str) -> None:
        """Task `name` works again."""
        if self._problems.pop(name, None) is not None:
            log.info("side task %s recovered", name)
        self._unwell.labels(name).set(0)

    def problems(self) -> dict[str, str]:
        """Every task that is not well now, with what is wrong."""
        found = dict(self._problems)
        for name, probe in self._probes.items():
            problem = probe()
            self._unwell.labels(name).set(0 if problem is None else 1)
            if problem is not None:
                found[name] = problem
        return found

    async def supervise(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
        *,
        initial_backoff_s: float = INITIAL_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        """Run `run()` until it returns or `stop` is set, starting it again after a
        backoff whenever it raises. A run that has lasted as long as the backoff is taken
        to be well again (its problem is cleared) and resets the backoff."""
        self._unwell.labels(name).set(0)
        backoff_s = initial_backoff_s
        while not stop.is_set():
            task = asyncio.ensure_future(run())
            try:
                done, _ = await asyncio.wait({task}, timeout=backoff_s)
                if not done:
                    self.recovered(name)
                    backoff_s = initial_backoff_s
                await task
                self.recovered(name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a side task never takes its service down
                self.failed(name, exc)
            finally:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff_s)
            backoff_s = min(backoff_s * 2, max_backoff_s)
