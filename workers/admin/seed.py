"""Seeding `dcc.control` from the TOML configuration file when the admin process starts.

Only keys never set are written (as version 1, by `config-file`): once an item was changed
through the API, the API's value is the truth and the file's is ignored, with a notice.
"""

from __future__ import annotations

import logging

import msgspec

from workers.admin.writer import ControlWriter
from workers.config.configfile import ConfigFile
from workers.config.defaults import CONFIG_FILE_AUTHOR
from workers.config.reader import ControlReader

__all__ = ["seed_control"]

log = logging.getLogger(__name__)


async def seed_control(config: ConfigFile, reader: ControlReader, writer: ControlWriter) -> int:
    """Write the file's items that were never set; return how many were written."""
    written = 0
    snapshot = reader.snapshot
    for key, body in config.items().items():
        existing = snapshot.get(key)
        if existing is None:
            await writer.put(key, body, by=CONFIG_FILE_AUTHOR, expected_version=0)
            written += 1
        elif msgspec.json.encode(body) != existing.raw:
            log.info(
                "%s: keeping version %d set by %s; the configuration file's value is ignored",
                key,
                existing.version,
                existing.by,
            )
    return written
