"""HTTP/1.1 messages, both directions: exact bytes out, events in whatever pieces the bytes arrive."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from servers.wire.http import (LAST_CHUNK, Data, EndOfMessage, HttpParser, ProtocolError, Request, Response,
                               encode_chunk, encode_head, encode_request, encode_response, keeps_alive,
                               split_chunked, split_messages)

RESPONSES = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
             b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"  # 204: no body whatever the header says
             b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;name=value\r\nabc\r\n10\r\n0123456789abcdef\r\n"
             b"0\r\nExpires: never\r\n\r\n")


def summary(events):
    """Events with the body pieces joined, so any way of splitting the input gives the same list."""
    out = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], bytes):
            out[-1] += event.data
        elif isinstance(event, Data):
            out.append(event.data)
        elif isinstance(event, EndOfMessage):
            out.append(("end", tuple(event.trailers)))
        else:
            out.append((event.start_line, tuple(event.headers), event.header_bytes))
    return out


def one_byte_at_a_time(parser, data):
    events = []
    for i in range(len(data)):
        events += parser.feed(data[i:i + 1])
    return events


# -- writing -------------------------------------------------------------------------------------

def test_encode_request_byte_exact():
    assert encode_request("GET", "/feed/sse", {"Host": "127.0.0.1:8080", "Accept": "text/event-stream"}) == (
        b"GET /feed/sse HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: text/event-stream\r\n\r\n")
    assert encode_request("POST", "/publish", [("Host", "h"), ("Content-Type", "application/json")], b'{"a":1}') == (
        b'POST /publish HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}')
    assert encode_request("POST", "/x", {"Host": "h"}, b"").endswith(b"Content-Length: 0\r\n\r\n")
    assert encode_request("GET", "/", {"Host": "h", "Content-Length": 2}, b"ab").count(b"Content-Length") == 1


@pytest.mark.parametrize("args, match", [
    (("GET", "/", {}), "Host"),
    (("GET", "/", {"Host": "h", "X-Evil": "a\r\nInjected: 1"}), "inject"),
    (("GET", "/", {"Host": "h", "Bad Name": "v"}), "header name"),
    (("GET", "/a b", {"Host": "h"}), "request line"),
    (("GET", "/", {"Host": "h", "Content-Length": "3"}, b"ab"), "Content-Length 3"),
    (("POST", "/", {"Host": "h", "Transfer-Encoding": "chunked"}, b"ab"), "encode_chunk"),
])
def test_encode_request_refuses_what_would_be_wrong_on_the_wire(args, match):
    with pytest.raises(ValueError, match=match):
        encode_request(*args)


def test_encode_response_byte_exact():
    assert encode_response(200, {"Content-Type": "text/plain"}, b"hi") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")
    assert encode_response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade")]) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert encode_response(204, body=b"") == b"HTTP/1.1 204 No Content\r\n\r\n"  # no Content-Length for 204
    assert encode_response(299, reason="Custom") == b"HTTP/1.1 299 Custom\r\n\r\n"
    assert encode_response(599) == b"HTTP/1.1 599\r\n\r\n"
    with pytest.raises(ValueError, match="cannot have a body"):
        encode_response(304, body=b"x")


def test_encode_head_is_the_layout_alone():
    assert encode_head("GET /x HTTP/1.1", {"Host": "h"}) == b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    assert encode_head("HTTP/1.1 200 OK", [("Content-Length", 12)]) == b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"
    with pytest.raises(ValueError, match="inject"):
        encode_head("GET / HTTP/1.1", {"Host": "h\nX: 1"})


def test_chunks_and_the_last_chunk():
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"x" * 26, ";note=1") == b"1a;note=1\r\n" + b"x" * 26 + b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"
    with pytest.raises(ValueError, match="LAST_CHUNK"):
        encode_chunk(b"")


# -- reading -------------------------------------------------------------------------------------

def test_responses_all_at_once_and_one_byte_at_a_time_give_the_same_events():
    whole = summary(HttpParser(response=True).feed(RESPONSES))
    assert whole == [
        ("HTTP/1.1 200 OK", (("Content-Length", "2"),), 38), b"hi", ("end", ()),
        ("HTTP/1.1 204 No Content", (("Content-Length", "7"),), 46), ("end", ()),
        ("HTTP/1.1 200 OK", (("Transfer-Encoding", "chunked"),), 47), b"abc0123456789abcdef",
        ("end", (("Expires", "never"),)),
    ]
    parser = HttpParser(response=True)
    assert summary(one_byte_at_a_time(parser, RESPONSES)) == whole
    assert parser.consumed == len(RESPONSES) and not parser.in_message


@given(st.lists(st.integers(min_value=0, max_value=len(RESPONSES)), max_size=8))
def test_any_split_gives_the_same_events(cuts):
    cuts = sorted(set(cuts) | {0, len(RESPONSES)})
    parser = HttpParser(response=True)
    events = []
    for a, b in zip(cuts, cuts[1:]):
        events += parser.feed(RESPONSES[a:b])
    assert summary(events) == summary(HttpParser(response=True).feed(RESPONSES))


def test_a_chunked_body_streams_as_it_arrives():
    parser = HttpParser(response=True)
    head = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert [type(e) for e in head] == [Response] and head[0].status == 200
    assert parser.feed(b"e\r\ndata: {\"a\": 1}") == [Data(b'data: {"a": 1}')]  # before the chunk's CRLF
    assert parser.feed(b"\r\n") == []
    assert parser.feed(b"2\r\n\n\n\r\n0\r\n\r\n") == [Data(b"\n\n"), EndOfMessage()]


def test_head_answers_have_no_body_and_the_next_answer_follows():
    parser = HttpParser(response=True)
    parser.expect("HEAD")
    parser.expect("GET")
    events = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    assert summary(events)[1:] == [("end", ()), ("HTTP/1.1 200 OK", (("Content-Length", "5"),), 38), b"hello",
                                   ("end", ())]


def test_304_and_1xx_have_no_body_and_1xx_does_not_use_up_a_request():
    parser = HttpParser(response=True)
    parser.expect("GET")
    parser.expect("HEAD")
    events = parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n"
                         b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")  # answers the HEAD
    assert [(type(e).__name__, getattr(e, "status", None)) for e in events] == [
        ("Response", 100), ("EndOfMessage", None), ("Response", 304), ("EndOfMessage", None),
        ("Response", 200), ("EndOfMessage", None)]


def test_101_hands_the_rest_to_the_next_protocol():
    frame = b"\x81\x05hello"
    parser = HttpParser(response=True)
    events = one_byte_at_a_time(parser, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                        b"Connection: Upgrade\r\n\r\n" + frame)
    assert [type(e) for e in events] == [Response, EndOfMessage]
    assert parser.switched and parser.rest() == frame
    assert parser.feed(b"\x88\x00") == [] and parser.rest() == b"\x88\x00"


def test_an_upgrade_request_switches_the_request_side():
    parser = HttpParser(response=False)
    events = parser.feed(encode_request("GET", "/ws", {"Host": "h", "Upgrade": "websocket", "Connection": "Upgrade",
                                                      "Sec-WebSocket-Key": "x"}) + b"\x81\x80abcd")
    assert isinstance(events[0], Request) and events[0].target == "/ws" and events[0].header("upgrade") == "websocket"
    assert parser.switched and parser.rest() == b"\x81\x80abcd"


def test_pipelined_requests_with_and_without_bodies():
    data = (encode_request("GET", "/a", {"Host": "h"}) + encode_request("POST", "/b", {"Host": "h"}, b"xyz")
            + encode_request("GET", "/c", {"Host": "h"}))
    events = HttpParser(response=False).feed(data)
    assert [e.target for e in events if isinstance(e, Request)] == ["/a", "/b", "/c"]
    assert [e.data for e in events if isinstance(e, Data)] == [b"xyz"]
    assert sum(isinstance(e, EndOfMessage) for e in events) == 3


def test_a_body_until_close_ends_at_the_end_of_the_stream():
    parser = HttpParser(response=True)
    events = parser.feed(b"HTTP/1.0 200 OK\r\n\r\nfirst ") + parser.feed(b"second")
    assert [e.data for e in events if isinstance(e, Data)] == [b"first ", b"second"]
    assert parser.framing == "close" and not keeps_alive(events[0])
    assert parser.feed_eof() == [EndOfMessage()]
    assert parser.feed_eof() == []  # a second end changes nothing


def test_keep_alive_rules():
    assert keeps_alive(Response(200))
    assert not keeps_alive(Response(200, headers=[("Connection", "close")]))
    assert not keeps_alive(Response(200, version="HTTP/1.0"))
    assert keeps_alive(Response(200, version="HTTP/1.0", headers=[("Connection", "Keep-Alive")]))


@pytest.mark.parametrize("data, response, match", [
    (b"SSH-2.0-OpenSSH\r\n", True, "not an HTTP response"),
    (b"\x81\x05hello", False, "not an HTTP request"),
    (b"GET /a b HTTP/1.1\r\n\r\n", False, "not an HTTP request"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", True, "not an HTTP response"),
    (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", True, "header field"),
    (b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n", True, "line folding"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", True, "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", True, "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", True, "smuggling"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", False, "chunked"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", True, "chunk-size line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", True, "longer than its chunk-size"),
])
def test_malformed_input_raises_a_clear_error(data, response, match):
    with pytest.raises(ProtocolError, match=match):
        one_byte_at_a_time(HttpParser(response), data)


def test_the_end_of_the_stream_inside_a_message_is_an_error():
    parser = HttpParser(response=True)
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    with pytest.raises(ProtocolError, match="closed in the middle of a message"):
        parser.feed_eof()
    assert HttpParser(response=True).feed_eof() == []  # between messages it is a clean close


def test_not_http_is_refused_at_once_not_after_64_kib():
    parser = HttpParser(response=True)
    with pytest.raises(ProtocolError):
        parser.feed(b"{")
    parser = HttpParser(response=True, max_head_bytes=100)
    with pytest.raises(ProtocolError, match="no end of the head within 100 bytes"):
        parser.feed(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 200)
    with pytest.raises(ProtocolError, match="over the limit of 100"):
        HttpParser(response=True, max_head_bytes=100).feed(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 200 + b"\r\n\r\n")


def test_bytes_after_an_until_close_body_are_an_error_once_it_ended():
    parser = HttpParser(response=True)
    parser.feed(b"HTTP/1.1 200 OK\r\n\r\nbody")
    parser.feed_eof()
    with pytest.raises(ProtocolError, match="after the end"):
        parser.feed(b"more")


# -- whole captures ------------------------------------------------------------------------------

def test_split_messages_counts_head_and_body_bytes_as_on_the_wire():
    messages, rest = split_messages(RESPONSES, response=True)
    assert [(m.header_bytes, m.body_bytes, m.complete, m.chunked) for m in messages] == [
        (38, 2, True, False), (46, 0, True, False), (47, 62, True, True)]
    assert sum(m.header_bytes + m.body_bytes for m in messages) == len(RESPONSES) and rest == b""
    assert messages[2].header("transfer-encoding") == "chunked"


def test_split_messages_flags_cut_off_messages_and_returns_what_is_not_http():
    cut = RESPONSES[:60]  # 40 B of the first answer, then inside the 204's status line
    messages, rest = split_messages(cut, response=True)
    assert [(m.start_line, m.complete) for m in messages] == [("HTTP/1.1 200 OK", True),
                                                              ("HTTP/1.1 204 No Cont", False)]
    assert messages[1].header_bytes == 20 and rest == b""
    inside_body = split_messages(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", True)[0][0]
    assert (inside_body.body, inside_body.complete) == (b"abc", False)
    until_close = split_messages(b"HTTP/1.0 200 OK\r\n\r\nall of it", True)[0][0]
    assert (until_close.body, until_close.complete) == (b"all of it", True)
    bad_chunks = split_messages(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", True)[0][0]
    assert (bad_chunks.body, bad_chunks.complete) == (b"1\r\nab\r\n", False)
    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"
    assert split_messages(upgrade, True)[1] == b"\x81\x02hi"
    assert split_messages(b"plain bytes\n", False) == ([], b"plain bytes\n")


def test_split_chunked_keeps_each_size_line_and_the_rest():
    body = b"3;name=value\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nExpires: never\r\n\r\n"
    chunks, rest = split_chunked(body)
    assert [(c.size, c.extensions, c.line, c.data) for c in chunks] == [
        (3, ";name=value", b"3;name=value\r\n", b"abc"), (16, "", b"10\r\n", b"0123456789abcdef"), (0, "", b"0\r\n", b"")]
    assert rest == b"Expires: never\r\n\r\n" and [c.wire_bytes for c in chunks] == [19, 22, 3]
    assert sum(c.wire_bytes for c in chunks) + len(rest) == len(body)
    assert split_chunked(body[:25]) == (chunks[:1], b"10\r\n01")


@given(st.binary(max_size=300), st.booleans())
def test_any_bytes_give_events_or_a_protocol_error_and_a_capture_never_raises(data, response):
    try:
        HttpParser(response).feed(data)
    except ProtocolError:
        pass
    messages, rest = split_messages(data, response)
    assert sum(m.header_bytes + m.body_bytes for m in messages) + len(rest) <= len(data)


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6))
def test_encoded_chunks_parse_back(pieces):
    body = b"".join(encode_chunk(p) for p in pieces) + LAST_CHUNK
    head = encode_response(200, {"Transfer-Encoding": "chunked"})
    events = HttpParser(response=True).feed(head + body)
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"".join(pieces)
    chunks, rest = split_chunked(body)
    assert [c.data for c in chunks] == [*pieces, b""] and rest == b"\r\n"
