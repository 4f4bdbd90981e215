"""
Which filesystem a database file is on, to refuse the network filesystems where SQLite is unsafe.

SQLite's write-ahead log keeps its index in a shared-memory file that every connection maps: processes
on two hosts sharing the database over NFS, SMB or AFS do not see each other's index and corrupt the
database, and these filesystems' locks are unreliable besides (https://sqlite.org/wal.html, "WAL does
not work over a network filesystem"; https://sqlite.org/howtocorrupt.html, section 2.1). A workspace
in a home directory on NFS or AFS, as on many grid user interfaces, is the usual way in.

The type comes from ``/proc/self/mountinfo`` (Linux): the mount whose point is the longest prefix of
the file's resolved directory. Elsewhere, or when it cannot be read, nothing is known and nothing is
refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from persistence.errors import NetworkFilesystem

__all__ = [
    "ALLOW_NETWORK_DATABASE",
    "NETWORK_FILESYSTEMS",
    "filesystem_type",
    "network_filesystem",
    "refuse_network_filesystem",
]

#: Set to 1 to open a database on a network filesystem anyway (one host, one process at a time).
ALLOW_NETWORK_DATABASE = "FAILOVER_ALLOW_NETWORK_DATABASE"

#: Filesystem types where several hosts may share a file but SQLite's locking and shared memory fail.
#: Cluster filesystems that keep POSIX locks and shared mappings coherent (Lustre, GPFS, CephFS) are not
#: among them.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "afs",
        "ncpfs",
        "9p",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
    }
)


def filesystem_type(path: str | os.PathLike[str], mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """
    The type of the filesystem holding ``path`` (which need not exist yet: its nearest existing
    directory counts), or None when it cannot be told.

    Args:
        path: a file or directory.
        mountinfo: the kernel's mount table (a test passes its own).
    """
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as table:
            lines = table.read().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, found = -1, None
    for line in lines:
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        point = _unescape(fields[4])
        fstype = fields[fields.index("-", 6) + 1]
        if os.path.commonpath([point, target]) == point and len(point) > best:
            best, found = len(point), fstype
    return found


def network_filesystem(path: str | Path) -> str | None:
    """
    The network filesystem type ``path`` is on (see :data:`NETWORK_FILESYSTEMS`), or None: not one,
    unknown, or allowed anyway through :data:`ALLOW_NETWORK_DATABASE`.
    """
    if os.environ.get(ALLOW_NETWORK_DATABASE) == "1":
        return None
    fstype = filesystem_type(path)
    return fstype if fstype in NETWORK_FILESYSTEMS else None


def refuse_network_filesystem(path: str | Path) -> None:
    """
    Raise :class:`~persistence.errors.NetworkFilesystem` if the database file ``path`` is on a network
    filesystem (see :func:`network_filesystem`), naming it and the ways out.
    """
    fstype = network_filesystem(path)
    if fstype is not None:
        raise NetworkFilesystem(
            f"{path}: the database is on a {fstype} filesystem, where SQLite's locks and write-ahead log "
            "fail and two hosts sharing it corrupt it: put it on a local disk (--home, $FAILOVER_HOME or "
            f"the configuration's paths), or set {ALLOW_NETWORK_DATABASE}=1 if only one host ever uses it"
        )


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in octal: \040, \011, \012, \134.
    if "\\" not in field:
        return field
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field
