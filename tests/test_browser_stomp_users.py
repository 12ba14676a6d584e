"""Real headless Chromium with our stomp.js: user destinations, page by page.

Three browser contexts (three separate browsers, as far as cookies and sockets go): alice twice,
bob once, each on ``/pages/stomp?login=...``. A message for alice reaches both of her pages and
not bob's; ``@send_to_user`` answers the sender's user.
"""
from __future__ import annotations

import pytest

from servers.feed.app import start_feed
from servers.feed.stomp import GreetingController, message_mapping, send_to_user

pytestmark = pytest.mark.browser


class Notes:
    @message_mapping("/note")
    @send_to_user("/queue/notes")
    def note(self, message, user):
        return {"for": user, "text": message["text"]}


@pytest.fixture
def feed():
    with start_feed(name="feed-browser-users", stomp_controllers=[GreetingController(), Notes()]) as handle:
        yield handle


@pytest.fixture
def open_page(browser):
    contexts = []

    def opener(feed, query):
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.goto(feed.url + "/pages/stomp" + query)
        page.wait_for_function("window.status_text && window.status_text.startsWith('subscribed')")
        return page

    yield opener
    for context in contexts:
        context.close()


def notes(page):
    return page.evaluate("window.notes")


def test_a_message_for_a_user_reaches_all_her_pages_and_no_one_else(feed, open_page):
    laptop = open_page(feed, "?login=alice&passcode=alice")
    phone = open_page(feed, "?login=alice&passcode=alice")
    bob = open_page(feed, "?login=bob&passcode=bob")
    assert laptop.evaluate("window.userName") == "alice" and bob.evaluate("window.userName") == "bob"
    assert "as alice" in laptop.evaluate("window.status_text")
    sent = feed.call(lambda app: app.stomp.convert_and_send_to_user("alice", "/queue/notes", {"text": "for alice"}))
    assert sent == 2
    for page in (laptop, phone):
        page.wait_for_function("window.notes.length === 1")
        assert notes(page) == [{"destination": "/user/queue/notes", "text": "for alice"}]
    feed.call(lambda app: app.stomp.convert_and_send_to_user("bob", "/queue/notes", {"text": "for bob"}))
    bob.wait_for_function("window.notes.length === 1")
    assert notes(bob) == [{"destination": "/user/queue/notes", "text": "for bob"}]  # alice's never came


def test_send_to_user_from_the_page_answers_its_users_pages(feed, open_page):
    laptop = open_page(feed, "?login=alice&passcode=alice")
    phone = open_page(feed, "?login=alice&passcode=alice")
    bob = open_page(feed, "?login=bob&passcode=bob")
    laptop.evaluate("stompClient.send('/app/note', JSON.stringify({text: 'typed on the laptop'}), "
                    "{'content-type': 'application/json'})")
    for page in (laptop, phone):
        page.wait_for_function("window.notes.length === 1")
        assert notes(page)[0]["for"] == "alice" and notes(page)[0]["text"] == "typed on the laptop"
    bob.evaluate("stompClient.send('/app/note', JSON.stringify({text: 'bob here'}), {'content-type': 'application/json'})")
    bob.wait_for_function("window.notes.length === 1")
    assert notes(bob) == [{"destination": "/user/queue/notes", "for": "bob", "text": "bob here"}]
    assert len(notes(laptop)) == 1  # the greeting topic still works beside it:
    laptop.click("#hello")
    laptop.wait_for_function("window.greetings.length === 1")


def test_a_wrong_passcode_shows_the_error_and_the_close(feed, browser):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(feed.url + "/pages/stomp?login=alice&passcode=nope")
        page.wait_for_function("window.status_text && window.status_text.startsWith('closed')")
        assert "1008" in page.evaluate("window.status_text")
        errors = page.evaluate("window.received.filter(m => m.type === 'stomp-error')")
        assert errors[0]["message"] == "authentication failed"
    finally:
        context.close()


def test_without_login_the_page_is_anonymous_and_has_no_user_queue(feed, open_page):
    page = open_page(feed, "")
    assert page.evaluate("window.userName") is None
    assert feed.call(lambda app: [sorted(s.subscriptions.values()) for s in app.stomp.sessions]) == [
        ["/topic/feed", "/topic/greetings"]]
