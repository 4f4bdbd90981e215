"""The stored-JSON codec: canonical text, and a one-key object built from its value's text."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from persistence.codec import dumps, dumps_one_key, loads

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)


def test_dumps_is_compact_sorted_and_keeps_non_ascii() -> None:
    assert dumps({"b": [1, None], "a": "é"}) == '{"a":"é","b":[1,null]}'


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(key=st.text(), value=_VALUES)
def test_one_key_object_from_the_value_text_equals_encoding_it_whole(key: str, value: Any) -> None:
    text = dumps_one_key(key, dumps(value))

    assert text == dumps({key: value})
    assert loads(text) == {key: value}
