"""guids.py against the standard library's uuid, the reference it stands in for."""
from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from azlift.vhd import guids

SIXTEEN = st.binary(min_size=16, max_size=16)


@given(SIXTEEN)
def test_text_is_uuids_text_both_ways_round(raw: bytes) -> None:
    assert guids.text(raw) == str(uuid.UUID(bytes=raw))
    assert guids.text_le(raw) == str(uuid.UUID(bytes_le=raw))


@given(SIXTEEN, st.sampled_from(["{}", "urn:uuid:{}", "{{{}}}", "{}-upper", "{}-bare"]))
def test_parse_takes_what_uuid_takes(raw: bytes, shape: str) -> None:
    written = str(uuid.UUID(bytes=raw))
    if shape.endswith("-upper"):
        written = written.upper()
    elif shape.endswith("-bare"):
        written = written.replace("-", "")
    else:
        written = shape.format(written)
    assert guids.parse(written) == uuid.UUID(written).bytes
    assert guids.parse_le(written) == uuid.UUID(written).bytes_le


@pytest.mark.parametrize("junk", ["", "not-a-guid", "0" * 31, "0" * 33, "g" * 32,
                                  "12345678-1234-1234-1234-12345678901z"])
def test_parse_refuses_what_uuid_refuses(junk: str) -> None:
    with pytest.raises(ValueError):
        uuid.UUID(junk)
    with pytest.raises(ValueError, match="expected a GUID"):
        guids.parse(junk)


@given(SIXTEEN, st.text(max_size=80))
def test_name_guid_is_uuid5(namespace: bytes, name: str) -> None:
    assert guids.name_guid(namespace, name) == uuid.uuid5(uuid.UUID(bytes=namespace), name).bytes


def test_random_guids_are_version_4_and_differ() -> None:
    made = {guids.random_guid() for _ in range(64)}
    assert len(made) == 64
    for raw in made:
        parsed = uuid.UUID(bytes=raw)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


@pytest.mark.parametrize("size", [0, 15, 17])
def test_a_wrong_length_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        guids.text(bytes(size))


def test_a_number_is_not_taken_for_sixteen_zero_bytes() -> None:
    with pytest.raises(TypeError):
        guids.text(16)  # type: ignore[arg-type]
