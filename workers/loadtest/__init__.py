"""`dccgate loadtest`: scenarios, a simulated device network, and the report of a run."""

__all__: list[str] = []
