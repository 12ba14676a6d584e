"""The SSE encoder and the streaming parser, against the WHATWG event-stream rules."""
from __future__ import annotations

from hypothesis import given, strategies as st

from servers.wire.sse import SSEEvent, SSEParser, encode_comment, encode_event


def parse_all(data: bytes, chunk: int | None = None) -> tuple[list[SSEEvent], SSEParser]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    if chunk is None:
        events += parser.feed(data)
    else:
        for i in range(0, len(data), chunk):
            events += parser.feed(data[i:i + chunk])
    return events, parser


def test_encode_event_fields_in_order_and_blank_line():
    assert encode_event("hi", id=3, event="tick", retry=500) == b"retry: 500\nid: 3\nevent: tick\ndata: hi\n\n"


def test_multi_line_data_becomes_several_data_lines():
    assert encode_event("a\nb\r\nc\rd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"
    events, _ = parse_all(encode_event("a\nb\r\nc"))
    assert [e.data for e in events] == ["a\nb\nc"]


def test_comment_is_ignored_by_the_parser():
    data = encode_comment("heartbeat") + encode_event("x")
    assert data.startswith(b": heartbeat\n")
    events, parser = parse_all(data)
    assert [e.data for e in events] == ["x"] and parser.comments == 1


def test_id_with_newline_is_refused():
    import pytest

    with pytest.raises(ValueError):
        encode_event("x", id="1\n2")


def test_all_three_line_endings_and_a_cr_split_from_its_lf():
    data = b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"
    for chunk in (None, 1, 2, 3):
        events, _ = parse_all(data, chunk)
        assert [e.data for e in events] == ["a", "b", "c"], chunk
    # CR at the end of one chunk, LF at the start of the next: one line end, not two
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\ndata: y\r\n\r\n") == [SSEEvent("x\ny")]


def test_bom_dropped_once_and_leading_space_stripped_once():
    events, _ = parse_all("\ufeffdata:  two spaces\n\n".encode())
    assert events[0].data == " two spaces"
    # a BOM later in the stream is not stripped: the field name is "\ufeffdata", unknown, ignored
    events, _ = parse_all(b"data: a\n\n\xef\xbb\xbfdata: b\n\n")
    assert [e.data for e in events] == ["a"]


def test_field_without_colon_and_unknown_fields():
    events, _ = parse_all(b"data\n\nfoo: bar\ndata: x\n\n")
    assert [e.data for e in events] == ["", "x"]


def test_event_without_data_is_not_dispatched_and_event_type_resets():
    events, _ = parse_all(b"event: a\n\nevent: b\ndata: 1\n\ndata: 2\n\n")
    assert [(e.event, e.data) for e in events] == [("b", "1"), ("message", "2")]


def test_last_event_id_persists_and_null_id_is_ignored():
    events, parser = parse_all(b"id: 7\ndata: a\n\ndata: b\n\nid: 8\x00\ndata: c\n\nid\ndata: d\n\n")
    assert [e.id for e in events] == ["7", "7", "7", ""]
    assert parser.last_event_id == ""


def test_retry_only_ascii_digits():
    _, parser = parse_all(b"retry: 1500\n\nretry: 12a\n\nretry: -5\n\n")
    assert parser.retry == 1500


def test_multibyte_utf8_split_across_chunks():
    data = encode_event("héllo ✓")
    events, _ = parse_all(data, 1)
    assert events[0].data == "héllo ✓"


def test_incomplete_event_at_end_is_not_dispatched():
    events, _ = parse_all(b"data: a\n\ndata: b\n")
    assert [e.data for e in events] == ["a"]


@given(st.text(), st.one_of(st.none(), st.integers(min_value=0)), st.integers(min_value=1, max_value=7))
def test_round_trip_any_text_any_chunking(text, id, chunk):
    events, _ = parse_all(encode_event(text, id=id), chunk)
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert [e.data for e in events] == [expected]
    assert events[0].id == ("" if id is None else str(id))
