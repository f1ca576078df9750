"""The alert worker: device alerts from `dcc.alerts.inbound` to each recipient on
`dcc.alerts.outbound`, with alert-storm protection (SECMP0062), regional capacity and the
MP102 rule. docs/alerts.md describes it for operators.

- `processor`: the decisions per batch (no I/O);
- `holds`: the MP102 rule and regional capacity after storm protection, and the offsets
  their held alerts keep from the commit;
- `state`: running storms across restarts (the `dcc.state.alerts` changelog);
- `firmware`: the 11.3 Activate Firmware requests the MP102 rule needs, from
  `dcc.sr.outbound`;
- `service`: the worker: its loop, the changelog restore and the firmware feed;
- `metrics`: its Prometheus metrics.
"""

from workers.alerts.metrics import AlertMetrics
from workers.alerts.processor import (
    BOUNDARY_HEADER,
    KNOWN_ALERT_CODES,
    SERVICE,
    STORM_HEADER,
    AlertProcessor,
    correlation_policy_from_config,
    device_key,
    regional_policy_from_config,
    storm_policy_from_config,
)
from workers.alerts.service import AlertService

__all__ = [
    "BOUNDARY_HEADER",
    "KNOWN_ALERT_CODES",
    "SERVICE",
    "STORM_HEADER",
    "AlertMetrics",
    "AlertProcessor",
    "AlertService",
    "correlation_policy_from_config",
    "device_key",
    "regional_policy_from_config",
    "storm_policy_from_config",
]
