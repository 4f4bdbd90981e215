"""Helpers shared by the many-files tests: small local files, each with its own content and LFN."""

from __future__ import annotations

from pathlib import Path

from failover.batch import BatchItem


def batch_files(tmp_path: Path, count: int, lfn_dir: str = "/vo/batch") -> list[BatchItem]:
    """``count`` files under ``tmp_path/out`` (file i holds 100 + i bytes of value i), LFNs ``lfn_dir/fi``."""
    folder = tmp_path / "out"
    folder.mkdir(exist_ok=True)
    items = []
    for i in range(count):
        path = folder / f"f{i}"
        path.write_bytes(bytes([i % 256]) * (100 + i))
        items.append(BatchItem(path, f"{lfn_dir}/f{i}"))
    return items
