"""Reading an offline W&B run's ``.wandb`` file back in tests.

wandb's Python package no longer ships a reader of its own files; the format is a LevelDB-style log
(a 7-byte header, then records in 32 KiB blocks, each chunk with a CRC-32, a length and a type) holding wandb's own
protocol-buffer ``Record`` messages, which are decoded here with wandb's generated classes.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str | Path) -> Iterator[Any]:
    """Every ``wandb_internal_pb2.Record`` of a ``.wandb`` file, each chunk's checksum verified."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, "not a .wandb file"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # a block's tail too short for a chunk header is padding
            pos += room
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += room
            continue
        body = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(body, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc, f"bad checksum at byte {pos}"
        pos += 7 + length
        parts = body if kind in (FULL, FIRST) else parts + body
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record


def history(path: str | Path) -> list[dict[str, Any]]:
    """The history rows of a ``.wandb`` file, as W&B stores them (its own ``_step``, ``_runtime`` included)."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def run_ids(run_dir: str | Path) -> list[str]:
    """The W&B run id of each offline run folder under a run folder's ``wandb/``, oldest first."""
    return [next(p.glob("run-*.wandb")).stem.removeprefix("run-")
            for p in sorted(Path(run_dir, "wandb").glob("offline-run-*"))]
