"""Pure traffic-management decisions: no I/O and no clock (time comes in as an argument).

- `gcra`, `rates`, `traffic`: SECMP0067 Service Request traffic management, per-User
  allocations under a system operating threshold, shared across routers by load reports.
- `storm`: SECMP0062 alert-storm protection per (device, alert code), with the exclusion list.
- `regional`: per-CSP-region forwarded-alert capacity, priority first, the rest delayed.
- `correlation`: the MP102 rule for false power-outage alerts after firmware activation.
"""

from throttling.gcra import MAX_RETRY_AFTER_S, Gcra, GcraStore, MemoryGcraStore
from throttling.mp102 import (
    CorrelationOutcome,
    CorrelationPolicy,
    CorrelationRelease,
    CorrelationStats,
    FirmwareActivationRule,
    HeldAlert,
)
from throttling.rates import RateMeter
from throttling.regional import REGIONS, RegionalGate, RegionalPolicy, RegionCapacity, ReleasedAlert
from throttling.storm import (
    DEFAULT_STORM_PARAMS,
    StormCopy,
    StormDecision,
    StormGuard,
    StormParams,
    StormPolicy,
    StormReason,
    StormState,
    StormStats,
    normalize_alert_code,
)
from throttling.traffic import (
    ADMITTED,
    ADMITTED_RESERVED,
    RULE_CAPACITY,
    RULE_RESERVED,
    Allocation,
    LimitPlan,
    LoadReport,
    SystemView,
    TrafficDecision,
    TrafficManager,
    TrafficPolicy,
    merge_reports,
    plan_limits,
    reason,
)

__all__ = [
    "ADMITTED",
    "ADMITTED_RESERVED",
    "DEFAULT_STORM_PARAMS",
    "MAX_RETRY_AFTER_S",
    "REGIONS",
    "RULE_CAPACITY",
    "RULE_RESERVED",
    "Allocation",
    "CorrelationOutcome",
    "CorrelationPolicy",
    "CorrelationRelease",
    "CorrelationStats",
    "FirmwareActivationRule",
    "Gcra",
    "GcraStore",
    "HeldAlert",
    "LimitPlan",
    "LoadReport",
    "MemoryGcraStore",
    "RateMeter",
    "RegionCapacity",
    "RegionalGate",
    "RegionalPolicy",
    "ReleasedAlert",
    "StormCopy",
    "StormDecision",
    "StormGuard",
    "StormParams",
    "StormPolicy",
    "StormReason",
    "StormState",
    "StormStats",
    "SystemView",
    "TrafficDecision",
    "TrafficManager",
    "TrafficPolicy",
    "merge_reports",
    "normalize_alert_code",
    "plan_limits",
    "reason",
]
