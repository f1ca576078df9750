"""The admin process: the HTTP API (configuration, tokens, quarantine decisions, audit), the
writer of `dcc.control` and `dcc.audit`, and the quarantine service with its metrics.

May import: `workers.config`, `workers.runtime`, `broker`, `adt`, `throttling`.
Never: the router, the alert worker, the tools.
"""

__all__: list[str] = []
