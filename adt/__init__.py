"""Pure Anomaly Detection Threshold decisions (SEC G6, Appendix AA): window counters,
data-value rules and the quarantine state machine.

No I/O and no clock: time comes in as an argument. The modules:

- `config`: the ADT values bodies (thresholds, value rules, exception windows), validated;
- `table`: values compiled for their owner (a User or the DCC), ids derived;
- `windows`: the bucketed sliding-window counter;
- `values`: data-value checks on request bodies;
- `exceptions`: declared exception windows that raise thresholds for a while;
- `engine`: `AdtEngine`, the router's per-request decision and counts;
- `reports`: DCC-wide counts summed across routers, with the overshoot bound;
- `snapshot`: a User's counters as a record, restored after a crash or rebalance;
- `quarantine`: pending -> released | deleted | expired, rebuilt from its event log.
"""

from adt.config import (
    ALL_SRVS,
    MAX_EXCEPTIONS,
    MAX_RULES,
    MAX_VALUE_RULES_PER_SRV,
    MAX_WINDOW_S,
    MAX_WINDOWS_PER_SRV,
    MIN_WINDOW_S,
    AdtValues,
    ExceptionWindow,
    Threshold,
    ValueRule,
    convert_values,
    decode_values,
    encode_values,
)
from adt.decision import PASS, AdtDecision, Breach, BreachKind
from adt.engine import AdtEngine, BodyGetter, ThresholdUsage
from adt.errors import (
    AdtConfigError,
    AdtError,
    AlreadyDecidedError,
    DuplicateEntryError,
    QuarantineError,
    SnapshotError,
    UnknownEntryError,
)
from adt.exception_windows import active_exceptions, drop_ended
from adt.quarantine import (
    BulkResult,
    Deleted,
    Expired,
    QuarantineBook,
    Quarantined,
    QuarantineEntry,
    QuarantineEvent,
    QuarantineState,
    Released,
)
from adt.reports import AdtCountReport, PeerCounts, SrvWindowCount, merge_reports
from adt.snapshot import (
    UserCountersSnapshot,
    WindowSnapshot,
    decode_snapshot,
    encode_snapshot,
)
from adt.table import AdtTable, CountRule
from adt.values import ValueCheck
from adt.windows import DEFAULT_BUCKETS, SlidingWindow

__all__ = [
    "ALL_SRVS",
    "DEFAULT_BUCKETS",
    "MAX_EXCEPTIONS",
    "MAX_RULES",
    "MAX_VALUE_RULES_PER_SRV",
    "MAX_WINDOWS_PER_SRV",
    "MAX_WINDOW_S",
    "MIN_WINDOW_S",
    "PASS",
    "AdtConfigError",
    "AdtCountReport",
    "AdtDecision",
    "AdtEngine",
    "AdtError",
    "AdtTable",
    "AdtValues",
    "AlreadyDecidedError",
    "BodyGetter",
    "Breach",
    "BreachKind",
    "BulkResult",
    "CountRule",
    "Deleted",
    "DuplicateEntryError",
    "ExceptionWindow",
    "Expired",
    "PeerCounts",
    "QuarantineBook",
    "QuarantineEntry",
    "QuarantineError",
    "QuarantineEvent",
    "QuarantineState",
    "Quarantined",
    "Released",
    "SlidingWindow",
    "SnapshotError",
    "SrvWindowCount",
    "Threshold",
    "ThresholdUsage",
    "UnknownEntryError",
    "UserCountersSnapshot",
    "ValueCheck",
    "ValueRule",
    "WindowSnapshot",
    "active_exceptions",
    "convert_values",
    "decode_snapshot",
    "decode_values",
    "drop_ended",
    "encode_snapshot",
    "encode_values",
    "merge_reports",
]
