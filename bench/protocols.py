"""
Upload throughput per storage protocol: a 1 GiB file put to a storage element on each backend, in MB/s.

The servers are the tests' own (``tests/servers.py``): XRootD, SeaweedFS (S3) and WsgiDAV (WebDAV) on
127.0.0.1, plus a local disk SE. Each figure is a whole ``StorageElement.put``: stream the file once with
its adler32, write a temporary name, verify (the server's adler32 on XRootD; the size, then a server-side
copy writing the adler32 as metadata on S3; a full read-back on WebDAV), and publish (rename, copy+delete,
MOVE). In the same run, for scale: ``cp`` of the file on the local disk, and each protocol's plain client
upload of the same file (``xrdcp``, s3fs ``put_file``, one streamed HTTP PUT) without any verification.

The page cache is hot and client and servers share the machine's cores, so these are upper bounds of
what the code can do, not of a grid link. A figure, not a test: nothing is asserted.

Usage: ``python bench/protocols.py [--size-mib N] [--dir DIR]``  (needs ``scripts/install-test-deps.sh``)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script, this directory comes first on sys.path, and bench/transitions.py would shadow the
# ``transitions`` package the engine imports. The servers are the tests' own.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import s3_server, unique_root, webdav_server, xrootd_server

from failover.checksum import CHUNK_SIZE
from failover.storage import StorageElement
from failover.storage.factory import storage_element

MIB = 1024 * 1024
LFN = "/vo/bench/run1/big.root"


def _make_source(path: Path, size: int) -> None:
    """A file of ``size`` bytes that no layer can compress: 16 MiB of random bytes, repeated."""
    block = os.urandom(16 * MIB)
    with open(path, "wb") as out:
        for offset in range(0, size, len(block)):
            out.write(block[: min(len(block), size - offset)])


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _row(name: str, seconds: float, size: int, note: str) -> None:
    print(f"{name:<28} {seconds:7.2f} s {size / MIB / seconds:8.0f} MB/s   {note}", flush=True)


def _put(se: StorageElement, source: Path) -> Callable[[], object]:
    return lambda: se.put(source, LFN)


def _streamed_put(url: str, source: Path, auth: tuple[str, str]) -> None:
    import httpx

    def body() -> Any:
        with open(source, "rb") as stream:
            while chunk := stream.read(CHUNK_SIZE):
                yield chunk

    httpx.put(url, content=body(), auth=auth, timeout=120).raise_for_status()


def run(size: int, workdir: Path) -> None:
    """Print the figures for a file of ``size`` bytes, working in ``workdir``."""
    source = workdir / "source.root"
    _make_source(source, size)
    print(f"{size // MIB} MiB file, {os.cpu_count()} cores; MB/s = MiB per second\n")
    _row("cp (local disk)", _timed(lambda: shutil.copyfile(source, workdir / "copy.root")), size, "baseline")
    (workdir / "copy.root").unlink()
    local = StorageElement("LOCAL", (workdir / "se").as_uri())
    _row("file:// put", _timed(_put(local, source)), size, "fsync, rename")
    with xrootd_server() as xrootd:
        se = storage_element("XRD", xrootd.url(unique_root("XRD")), xrootd.options())
        _row("root:// put", _timed(_put(se, source)), size, "NEW + sync, server adler32, mv")
        command = ["xrdcp", "--silent", "--force", "--path", str(source), f"{xrootd.url('plain')}/big.root"]
        _row("  xrdcp (plain client)", _timed(lambda: subprocess.run(command, check=True)), size, "")
    with s3_server() as s3:
        se = storage_element("S3", s3.url(unique_root("S3")), s3.options())
        _row(
            "s3:// put", _timed(_put(se, source)), size, "multipart, size + ETag, copy with adler32 metadata"
        )
        plain = se.fs
        _row("  s3fs put_file", _timed(lambda: plain.put_file(str(source), "failover/plain.root")), size, "")
    with webdav_server() as dav:
        se = storage_element("DAV", dav.url(unique_root("DAV")), dav.options())
        _row("dav:// put", _timed(_put(se, source)), size, "chunked PUT, read-back adler32, MOVE")
        url = f"http://127.0.0.1:{dav.port}/big.root"
        auth = (dav.options()["username"], dav.options()["password"])
        _row("  streamed PUT (httpx)", _timed(lambda: _streamed_put(url, source, auth)), size, "no read-back")


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-protocols-", dir=args.dir))
    started = time.perf_counter()
    try:
        run(args.size_mib * MIB, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
