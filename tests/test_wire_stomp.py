"""STOMP 1.2 frame encoding, escaping, the streaming parser and its limits."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from servers.wire.stomp import (Frame, StompError, StompParser, encode_frame, negotiate_heart_beat,
                                negotiate_version, parse_heart_beat)


def test_encode_escapes_headers_and_adds_content_length():
    data = encode_frame(Frame("SEND", {"destination": "/topic/a", "k:1": "line1\nline2\r\\"}, b"hi"))
    assert data == b"SEND\ndestination:/topic/a\nk\\c1:line1\\nline2\\r\\\\\ncontent-length:2\n\nhi\x00"


def test_connect_and_connected_are_not_escaped():
    assert encode_frame(Frame("CONNECT", {"passcode": "a:b"})) == b"CONNECT\npasscode:a:b\n\n\x00"
    frames = StompParser().feed(b"CONNECTED\nversion:1.2\nserver:x\\cy\n\n\x00")
    assert frames[0].headers["server"] == "x\\cy"


def test_parse_unescapes_and_keeps_first_repeated_header():
    frames = StompParser().feed(b"MESSAGE\nfoo:a\\cb\\n\\\\\nfoo:second\n\nbody\x00")
    assert frames == [Frame("MESSAGE", {"foo": "a:b\n\\"}, b"body")]


def test_undefined_escape_is_an_error():
    with pytest.raises(StompError, match="undefined escape"):
        StompParser().feed(b"SEND\ndestination:/a\\t\n\n\x00")


def test_content_length_body_may_contain_null():
    frames = StompParser().feed(b"SEND\ncontent-length:3\n\na\x00b\x00")
    assert frames[0].body == b"a\x00b"


def test_content_length_wrong_is_an_error():
    with pytest.raises(StompError, match="longer than its content-length"):
        StompParser().feed(b"SEND\ncontent-length:1\n\nab\x00")


def test_heart_beats_crlf_and_split_frames():
    data = b"\n\r\n" + encode_frame(Frame("SEND", {"destination": "/t"}, b"1")) + b"\n" + \
        b"SEND\r\ndestination:/u\r\n\r\n2\x00"
    parser = StompParser()
    frames = []
    for i in range(len(data)):
        frames += parser.feed(data[i:i + 1])
    assert [(f.headers["destination"], f.body) for f in frames] == [("/t", b"1"), ("/u", b"2")]
    assert parser.heartbeats == 3


def test_unknown_command_and_header_without_colon():
    with pytest.raises(StompError, match="unknown command"):
        StompParser().feed(b"HELLO\n\n\x00")
    with pytest.raises(StompError, match="without a colon"):
        StompParser().feed(b"SEND\nnocolon\n\n\x00")


@pytest.mark.parametrize("data, limit", [
    (b"SEND\n" + b"".join(b"h%d:v\n" % i for i in range(10)) + b"\n\x00", dict(max_headers=5)),
    (b"SEND\nh:" + b"x" * 200 + b"\n\n\x00", dict(max_header_length=100)),
    (b"SEND\nh:" + b"x" * 200, dict(max_header_length=100)),      # too long before it even ends
    (b"SEND\ncontent-length:5000\n\n", dict(max_body=1000)),      # refused before the body arrives
    (b"SEND\n\n" + b"x" * 2000, dict(max_body=1000)),             # no NULL within the limit
])
def test_limits_raise_too_large(data, limit):
    with pytest.raises(StompError) as info:
        StompParser(**limit).feed(data)
    assert info.value.too_large


def test_version_and_heart_beat_negotiation():
    assert negotiate_version("1.0,1.1,1.2") == "1.2"
    assert negotiate_version("1.1") == "1.1"
    assert negotiate_version(None) == "1.0"
    assert negotiate_version("2.0") is None
    assert parse_heart_beat("100,200") == (100, 200)
    assert parse_heart_beat(None) == (0, 0)
    with pytest.raises(StompError):
        parse_heart_beat("x")
    # (client->server, server->client)
    assert negotiate_heart_beat((0, 0), (10000, 10000)) == (0, 0)
    assert negotiate_heart_beat((4000, 20000), (10000, 10000)) == (10000, 20000)
    assert negotiate_heart_beat((4000, 20000), (0, 0)) == (0, 0)


header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(st.dictionaries(header_text.filter(bool), header_text, max_size=5), st.binary(max_size=50),
       st.integers(min_value=1, max_value=9))
def test_round_trip_any_headers_and_body(headers, body, chunk):
    headers.pop("content-length", None)
    data = encode_frame(Frame("MESSAGE", headers, body))
    parser = StompParser()
    frames = []
    for i in range(0, len(data), chunk):
        frames += parser.feed(data[i:i + chunk])
    assert len(frames) == 1
    expected = dict(headers)
    if body:
        expected["content-length"] = str(len(body))
    assert frames[0].headers == expected and frames[0].body == body
