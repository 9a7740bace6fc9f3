"""Reads the records of an offline W&B run file (``run-<id>.wandb``) so tests can check what was logged.

wandb 0.31 ships no Python reader (its core is in Go); the file is a LevelDB-style log of ``Record`` protos:
a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of chunks (crc32: 4 bytes, length: 2,
type: 1 full, 2 first, 3 middle, 4 last).
"""

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

_HEADER, _BLOCK, _CHUNK_HEADER = 7, 32768, 7


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, offset = [], b"", _HEADER
    while offset + _CHUNK_HEADER <= len(data):
        left_in_block = _BLOCK - offset % _BLOCK
        if left_in_block < _CHUNK_HEADER:
            offset += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + _CHUNK_HEADER])
        chunk = data[offset + _CHUNK_HEADER : offset + _CHUNK_HEADER + length]
        offset += _CHUNK_HEADER + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def logged(path: Path) -> dict[str, Any]:
    """Everything a run logged: ``history`` (list of step dicts), ``summary`` and ``config`` (dicts)."""
    history, summary, config = [], {}, {}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
        elif kind == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind in ("config", "run"):
            for item in (record.config if kind == "config" else record.run.config).update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return {"history": history, "summary": summary, "config": config}
