"""`dccgate loadtest`: scenarios, a network simulator and a runner that drives a gateway.

`scenario` parses scenarios, `install` is the Install & Commission state machine,
`generator` and `network` make the traffic and the devices' answers (pure, seeded),
`runner` drives a gateway through Kafka, and `cli` is the command (docs/loadtest.md).
"""

__all__: list[str] = []
