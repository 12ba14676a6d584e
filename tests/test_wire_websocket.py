"""RFC 6455 handshake key and frame headers."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from servers.wire.websocket import (accept_key, encode_frame, frame_header, frame_overhead, mask_payload,
                                    parse_frame_header)


def test_accept_key_of_the_seed_and_of_rfc_6455():
    assert accept_key("Uc9l9TMkWGbHFD2qnFHltg==") == "1qVdfYHU9hPOl4JYYNXF623Gzn0="
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3


@pytest.mark.parametrize("length, expected", [(0, "8100"), (125, "817d"), (126, "817e007e"),
                                              (65535, "817effff"), (65536, "817f0000000000010000")])
def test_length_encodings(length, expected):
    assert frame_header(length).hex() == expected
    assert frame_overhead(length) == len(bytes.fromhex(expected))


def test_rfc_examples_decode():
    # RFC 6455 §5.7: a single-frame unmasked text message "Hello", and the masked one
    unmasked = bytes.fromhex("810548656c6c6f")
    header, n = parse_frame_header(unmasked)
    assert (header.fin, header.opcode_name, header.masked, header.payload_len, n) == (True, "text", False, 5, 2)
    masked = bytes.fromhex("818537fa213d7f9f4d5158")
    header, n = parse_frame_header(masked)
    assert header.mask_key == bytes.fromhex("37fa213d") and n == 6
    assert mask_payload(masked[n:], header.mask_key) == b"Hello"
    assert encode_frame("Hello", mask_key=bytes.fromhex("37fa213d")) == masked


def test_incomplete_header_says_how_many_bytes_it_needs():
    full = frame_header(70000, mask_key=b"abcd")
    assert parse_frame_header(b"") == (None, 2)
    assert parse_frame_header(full[:2]) == (None, 14)
    assert parse_frame_header(full[:13]) == (None, 14)
    assert parse_frame_header(full)[1] == 14


def test_non_minimal_and_oversized_lengths_are_refused():
    with pytest.raises(ValueError):
        parse_frame_header(bytes.fromhex("817e0005"))
    with pytest.raises(ValueError):
        parse_frame_header(bytes.fromhex("817f8000000000000000"))


def test_control_and_fragment_bits():
    header, _ = parse_frame_header(frame_header(2, opcode=0x8) + b"\x03\xe8")
    assert header.opcode_name == "close"
    header, _ = parse_frame_header(frame_header(3, opcode=0x1, fin=False))
    assert header.fin is False


@given(st.integers(min_value=0, max_value=2**40), st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]), st.booleans(),
       st.one_of(st.none(), st.binary(min_size=4, max_size=4)))
def test_header_round_trip(length, opcode, fin, mask):
    data = frame_header(length, opcode, fin, mask)
    header, n = parse_frame_header(data)
    assert n == len(data) == frame_overhead(length, mask is not None)
    assert (header.payload_len, header.opcode, header.fin, header.mask_key) == (length, opcode, fin, mask)
