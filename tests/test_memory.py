"""Uploading a big file streams it: memory stays flat whatever the file size (issue 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# ru_maxrss of a child started from a big pytest process reports the parent's peak; reset the high-water
# mark (clear_refs "5") and read the child's own from /proc instead.
UPLOAD_AND_REPORT = """
import json, re, sys
open("/proc/self/clear_refs", "w").write("5")
from failover import open_workspace, upload
env = open_workspace(sys.argv[1], ses=("DEST",))
result = upload(env, sys.argv[2], "/vo/big/file.bin", destinations=["DEST"])
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps({"state": result.state, "size": result.size, "peak_mb": peak_kb / 1024}))
"""


def test_a_200_mb_upload_peaks_under_100_mb_of_memory(tmp_path: Path) -> None:
    """A fresh process uploads (put, checksum, register) a 200 MB file; its peak RSS stays under 100 MB."""
    big = tmp_path / "big.bin"
    with open(big, "wb") as stream:  # sparse: 200 MB of size, no disk needed
        stream.truncate(200 * 1024 * 1024)
    done = subprocess.run(
        [sys.executable, "-c", UPLOAD_AND_REPORT, str(tmp_path / "ws"), str(big)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["state"] == "Registered"
    assert report["size"] == 200 * 1024 * 1024
    assert report["peak_mb"] < 100, report
