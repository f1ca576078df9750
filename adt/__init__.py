"""Pure Anomaly Detection Threshold decisions (SEC G6, Appendix AA): window counters,
data-value rules and the quarantine state machine.

No I/O and no clock: time comes in as an argument. Filled by the anomaly-detection work
(see docs/how-it-works.md).
"""

__all__: list[str] = []
