"""Deterministic ids are the standard name-based UUIDs (version 5) of their parts."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from mandi.core.ids import _NAMESPACE, stable_id


@given(st.lists(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False)), max_size=5))
def test_stable_id_is_uuid5_of_the_joined_parts(parts):
    got = stable_id(*parts)
    assert got == str(uuid.uuid5(_NAMESPACE, "|".join(map(str, parts))))
    assert uuid.UUID(got).version == 5
