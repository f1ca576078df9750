"""Developer and operator tools: `send`, `watch`, `bench`, `admin` (the admin API at a
terminal) and `loadtest`. Imported by the CLI only; nothing in the gateway imports a tool.
"""

__all__: list[str] = []
