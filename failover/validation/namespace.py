"""
The LFN namespace: a name is a file or a directory, never both.

A catalog refuses an LFN below a registered file, or one with registered files below it
(:meth:`~failover.catalog.FileCatalog.path_conflict`). The files of one call are not registered yet
when the call checks them, so :class:`CallNames` refuses such a clash among them, before anything of
the later file is stored.
"""

from __future__ import annotations

__all__ = ["CallNames", "lfn_directories"]


def lfn_directories(lfn: str) -> list[str]:
    """
    The directories above a valid LFN, the top first.

    >>> lfn_directories("/vo/user/run42/out.root")
    ['/vo', '/vo/user', '/vo/user/run42']
    >>> lfn_directories("/out.root")
    []
    """
    parts = lfn.split("/")
    return ["/".join(parts[:end]) for end in range(2, len(parts))]


class CallNames:
    """
    The LFNs a call has taken so far, to tell whether the next one clashes with one of them.

    >>> names = CallNames()
    >>> names.add("/vo/run/out")
    >>> names.clash("/vo/run/out/part1").split(":")[0]
    '/vo/run/out/part1 is below /vo/run/out, another file of this upload'
    >>> names.clash("/vo/run") is None, names.clash("/vo/run/out") is None
    (False, True)
    """

    def __init__(self) -> None:
        self._files: set[str] = set()
        # Each directory of a file taken, with that file (the first one below it).
        self._directories: dict[str, str] = {}

    def clash(self, lfn: str) -> str | None:
        """Why ``lfn`` cannot be a file next to the LFNs taken (the same LFN is no clash), or ``None``."""
        below = self._directories.get(lfn)
        if below is not None:
            return f"{lfn} is the directory of {below}, another file of this upload: {_RULE}"
        above = next((name for name in lfn_directories(lfn) if name in self._files), None)
        if above is not None:
            return f"{lfn} is below {above}, another file of this upload: {_RULE}"
        return None

    def add(self, lfn: str) -> None:
        """Take ``lfn`` as a file."""
        self._files.add(lfn)
        for directory in lfn_directories(lfn):
            self._directories.setdefault(directory, lfn)


_RULE = "a name is a file or a directory, never both"
