"""Pure traffic-management decisions (SECMP0067 allocations, SECMP0062 alert storms).

No I/O and no clock: time comes in as an argument. Filled by the traffic-management and
alert-storm work (see docs/how-it-works.md).
"""

__all__: list[str] = []
