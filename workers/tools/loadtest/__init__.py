"""`dccgate loadtest`: scenarios, a network simulator, a runner that drives a gateway, and
the report of a run.

`scenario` parses scenarios, `install` is the Install & Commission state machine,
`generator` and `network` make the traffic and the devices' answers (pure, seeded),
`runner` drives a gateway through Kafka, and `cli` is the command (docs/loadtest.md);
`results` collects a run's outcomes and latencies and `report` writes report.json and
report.html (docs/loadtest-report.md).
"""

__all__: list[str] = []
