"""
Checksums computed piece by piece are those of the whole: ADLER32 (zlib-ng's) agrees with the standard
library's ``zlib.adler32``, whatever the pieces and however big.
"""

from __future__ import annotations

import hashlib
import random
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from failover.checksum import ChecksumType, MultiChecksum


def _summed(data: bytes, cuts: list[int]) -> MultiChecksum:
    summer = MultiChecksum([ChecksumType.ADLER32, ChecksumType.MD5])
    start = 0
    for end in [*sorted({min(cut, len(data)) for cut in cuts}), len(data)]:
        summer.update(memoryview(data)[start:end])
        start = end
    return summer


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(data=st.binary(max_size=20_000), cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=8))
def test_adler32_piece_by_piece_is_the_standard_librarys_of_the_whole(data: bytes, cuts: list[int]) -> None:
    summer = _summed(data, cuts)
    assert summer.hexdigest(ChecksumType.ADLER32) == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert summer.hexdigest(ChecksumType.MD5) == hashlib.md5(data).hexdigest()
    assert summer.size == len(data)


def test_adler32_of_big_pieces_where_the_sums_wrap_is_the_standard_librarys() -> None:
    """Megabytes of 0xff bytes push both adler32 sums past their modulus many times over."""
    rng = random.Random(8)
    data = b"\xff" * (3 << 20) + rng.randbytes(5 << 20)
    summer = _summed(data, [1, 65_536, 2 << 20, (6 << 20) + 3])
    assert summer.hexdigest(ChecksumType.ADLER32) == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
