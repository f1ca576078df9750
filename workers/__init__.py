"""The long-running asyncio services of dccgate, its CLI and its HTTP side."""

__all__: list[str] = []
