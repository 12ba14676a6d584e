"""Lessons 01 and 02: the conditional short poll (ETag, If-None-Match, 304), the code the lessons
show, and the measurements their cells run (the conditional poll's bytes, the waiter timeline)."""
from __future__ import annotations

import pytest
import requests

from lab.code import code_text, script_text
from lab.lessons.long_polling import start_lesson_feed, waiter_timeline
from lab.lessons.short_polling import conditional_poll_bytes
from servers.feed.app import start_feed
from servers.feed.longpoll import LongPollHandler
from servers.feed.polling import PollHandler


@pytest.fixture
def feed():
    with start_feed(name="feed-lessons-01-02", buffer_size=3) as handle:
        yield handle


def poll(feed, after, etag=None):
    headers = {"If-None-Match": etag} if etag is not None else {}
    return requests.get(feed.url + "/feed/poll", params={"after": after}, headers=headers)


def publish(feed, data):
    return requests.post(feed.url + "/feed/publish", json={"data": data}).json()["seq"]


# --- ETag and If-None-Match on GET /feed/poll (RFC 9110 §8.8.3, §13.1.2, §15.4.5) ---------------

def test_unchanged_poll_answers_304_with_no_body(feed):
    first = poll(feed, 0)
    assert first.status_code == 200 and first.json() == {"events": []}
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"'), "a strong entity tag: quoted, no W/ prefix"
    again = poll(feed, 0, etag)
    assert again.status_code == 304 and again.content == b""
    # a 304 carries the validator and the caching headers a 200 would have had (RFC 9110 §15.4.5)
    assert again.headers["ETag"] == etag and again.headers["Cache-Control"] == "no-cache"
    assert "Content-Type" not in again.headers and again.headers["X-Served-By"] == "feed-lessons-01-02"


def test_a_publish_changes_the_answer_and_its_etag(feed):
    old = poll(feed, 0).headers["ETag"]
    publish(feed, "news")
    answer = poll(feed, 0, old)
    assert answer.status_code == 200 and [e["data"] for e in answer.json()["events"]] == ["news"]
    new = answer.headers["ETag"]
    assert new != old
    assert poll(feed, 0, new).status_code == 304
    # the cursor moved on: nothing after 1, the empty answer again, and its validator matches
    assert poll(feed, 1, old).status_code == 304


def test_same_etag_exactly_when_same_answer(feed):
    """Over every cursor and many buffer states (with overflow: ``missed``), two answers share an
    ETag if and only if their bodies are the same bytes, and a cursor's ETag changes exactly when
    its answer does."""
    seen: dict[str, bytes] = {}
    previous: dict[int, tuple[str, bytes]] = {}
    for step in range(8):
        for after in range(0, step + 3):
            answer = poll(feed, after)
            etag, body = answer.headers["ETag"], answer.content
            assert seen.setdefault(etag, body) == body, f"one ETag {etag} for two bodies"
            if after in previous:
                old_etag, old_body = previous[after]
                assert (old_etag == etag) == (old_body == body), (after, old_body, body)
            previous[after] = (etag, body)
        publish(feed, {"step": step})
    assert any(b"missed" in body for body in seen.values()), "the buffer of 3 overflowed at least once"
    bodies = list(seen.values())
    assert len(set(bodies)) == len(bodies), "two ETags for the same bytes"


def test_a_restarted_server_gives_other_etags_for_the_same_seqs():
    with start_feed(name="first") as first, start_feed(name="second") as second:
        for handle in (first, second):
            publish(handle, "same data, another buffer")
        assert poll(first, 0).headers["ETag"] != poll(second, 0).headers["ETag"]
        # the empty answer is the same bytes on both, so it may share its validator
        assert poll(first, 1).headers["ETag"] == poll(second, 1).headers["ETag"]


@pytest.mark.parametrize("header", ['W/"{tag}"', '"other", {etag}', 'W/"other", W/"{tag}"', "*"])
def test_if_none_match_uses_weak_comparison_and_lists(feed, header):
    """RFC 9110 §13.1.2: If-None-Match compares weakly (W/"x" matches "x"), takes a list, and
    "*" matches any current representation; each gives 304 for GET."""
    publish(feed, 1)
    etag = poll(feed, 0).headers["ETag"]
    value = header.format(etag=etag, tag=etag.strip('"'))
    answer = poll(feed, 0, value)
    assert answer.status_code == 304 and answer.content == b"", value


@pytest.mark.parametrize("value", ["", "empty", '"empty', "W/", ",,,", '"not-this-one"', 'W/"x" "y', "\u00e9" * 50,
                                   '"' + "a" * 4000 + '"'])
def test_bad_or_foreign_if_none_match_values_are_harmless(feed, value):
    answer = poll(feed, 0, value)
    assert answer.status_code == 200 and answer.json() == {"events": []} and answer.headers["ETag"] == '"empty"'


def test_preconditions_do_not_hide_a_bad_request(feed):
    answer = poll(feed, "x", "*")
    assert answer.status_code == 400 and answer.json()["error"] == "bad_argument"


def test_the_long_poll_answer_carries_no_etag(feed):
    answer = requests.get(feed.url + "/feed/longpoll", params={"after": 0, "timeout": 0})
    assert answer.status_code == 200 and "ETag" not in answer.headers
    assert answer.headers["Cache-Control"] == "no-cache"


# --- what the lessons show and measure ---------------------------------------------------------

def test_the_code_the_lessons_show_is_there():
    assert "check_etag_header" in code_text(PollHandler)[1]
    longpoll = code_text(LongPollHandler)[1]
    assert "on_connection_close" in longpoll and ".cancel()" in longpoll and "wait_for" in longpoll
    assert "../feed/poll?after=" in script_text("poll.html", "poll-loop")[1]
    assert "../feed/longpoll?after=" in script_text("longpoll.html", "longpoll-loop")[1]
    for handler in (PollHandler, LongPollHandler):  # about a screen
        assert len(code_text(handler)[1].splitlines()) <= 40


def test_conditional_poll_bytes_saves_the_body_not_the_request(feed):
    for i in range(3):
        publish(feed, {"price": 100 + i})
    table = conditional_poll_bytes(feed)
    assert table.status.tolist() == ["200 OK", "304 Not Modified"] * 2
    plain, conditional = table.iloc[[0, 2]], table.iloc[[1, 3]]
    assert (conditional.response_body_bytes.to_numpy() == 0).all()
    assert (plain.response_body_bytes.to_numpy() > 0).all()
    assert (conditional.response_header_bytes.to_numpy() < plain.response_header_bytes.to_numpy()).all()
    # the request grows by its If-None-Match line
    assert (conditional.request_header_bytes.to_numpy() > plain.request_header_bytes.to_numpy()).all()


def test_waiter_timeline_sees_each_waiter_go_when_its_client_closes():
    feed = start_lesson_feed(name="lesson-02-test")
    try:
        timeline = waiter_timeline(feed, 3, timeout=60, spacing=0.05)
    finally:
        feed.stop()
    clients, samples = timeline["clients"], timeline["samples"]
    assert samples.waiters.max() == 3 and samples.waiters.iloc[-1] == 0
    assert (clients.waiter_gone_at_s >= clients.closed_at_s).all()
    # each waiter went before the next client closed: one drop per close, none left for the timeout
    assert (clients.waiter_gone_at_s.iloc[:-1].to_numpy() < clients.closed_at_s.iloc[1:].to_numpy()).all()
    assert feed.app.waiter_count == 0


@pytest.mark.browser
def test_a_browser_polls_conditionally_by_itself(page):
    """The poll page's plain fetch() gets If-None-Match from the browser's HTTP cache, since the
    answer says ``Cache-Control: no-cache`` and carries an ETag; a 304 reaches the page as the
    stored 200, so the page still sees every event."""
    from lab.tap import start_tap

    with start_feed(name="feed-browser-etag") as feed, start_tap(feed) as tap:
        page.goto(tap.url + "/pages/poll?interval=50")
        page.wait_for_function("window.requests >= 3")
        publish(feed, "x")
        page.wait_for_function("window.lastSeq === 1")
        page.wait_for_function("window.requests >= 6")
        messages = tap.http_messages()
        sent = b"".join(tap.raw(conn, "up") for conn in messages.conn.unique())
    assert page.evaluate("window.received.map(m => m.seq)") == [1]
    assert "HTTP/1.1 304 Not Modified" in messages[messages.kind == "response"].start_line.tolist()
    assert b"If-None-Match: " in sent
