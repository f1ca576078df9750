"""The service kernel every worker runs on: the consume-process-produce loop and its commit
bookkeeping, dead letters, shared metrics, the `/metrics` and `/healthz` HTTP side, and how an
entry point runs its coroutine.

May import: `broker`. Never: the router, the alert worker, the admin process, the tools.
"""

__all__: list[str] = []
