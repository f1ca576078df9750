"""Files of the load-test tool: indented JSON of a Struct, written so no reader sees half."""

from __future__ import annotations

from pathlib import Path

import msgspec

__all__ = ["encode_json", "write_atomically"]

_ENCODER = msgspec.json.Encoder()


def encode_json(value: msgspec.Struct) -> bytes:
    """Indented JSON of a report Struct, with a final newline."""
    return msgspec.json.format(_ENCODER.encode(value), indent=1) + b"\n"


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory, then rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
