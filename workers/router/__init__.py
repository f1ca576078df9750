"""The router: Service Requests from `dcc.sr.inbound` to devices, or back to the User.

`processor` decides each request (decode, DUIS validation, traffic management (SECMP0067),
anomaly detection (SEC G6)); `traffic` and `load_exchange` carry SECMP0067 and the DCC-wide
counts between routers; `adt`, `adt_metrics` and `adt_state` are the ADT values, their metrics and
their changelog; `service` runs it all as one service.

May import: `workers.config`, `workers.duis`, `workers.runtime`, `broker`, `adt`, `throttling`.
Never: `workers.admin`, `workers.alerts`, `workers.tools`.
"""

__all__: list[str] = []
