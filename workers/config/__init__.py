"""The configuration contract every service reads: the `dcc.control` model and its snapshot,
the reader that keeps it current, the TOML configuration file, response codes and the one
frozen `Settings` object.

May import: `broker`, `adt`, `throttling`, `workers.duis`. Never: the router, the alert worker,
the admin process, the tools.
"""

__all__: list[str] = []
