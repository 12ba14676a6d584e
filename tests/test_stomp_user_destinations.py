"""STOMP user destinations (Spring's ``/user/queue/...``, ``convertAndSendToUser``, ``@SendToUser``):
who a session's user is, that a message for one user reaches every session of that user and no
one else, and that a client cannot reach another user's queue. Our client and stomp.py."""
from __future__ import annotations

import json
import queue

import pytest

from servers.clients.stomp import StompClient, StompErrorFrame
from servers.clients.ws import ConnectionClosed
from servers.feed.app import start_feed
from servers.feed.stomp import GreetingController, message_mapping, send_to, send_to_user

stomp = pytest.importorskip("stomp", reason="pip install stomp.py")


class Private:
    @message_mapping("/note")
    @send_to_user("/queue/notes")                   # every session of the sender's user
    def note(self, message, user):
        return {"for": user, "text": message}

    @message_mapping("/mine")
    @send_to_user("/queue/notes", broadcast=False)  # the sending session only
    def mine(self, message, frame, user):
        return {"for": user, "text": message, "receipt": frame.headers.get("x-tag")}

    @message_mapping("/default")
    @send_to_user()                                 # /queue + the mapping: /user/queue/default
    def default(self, message):
        return {"echo": message}


@pytest.fixture
def feed():
    with start_feed(name="feed-users", stomp_controllers=[GreetingController(), Private()]) as handle:
        yield handle


def login(feed, user, passcode=None):
    client = StompClient(feed, headers={"login": user, "passcode": user if passcode is None else passcode})
    client.subscribe("/user/queue/notes")
    return client


def to_user(feed, user, payload, destination="/queue/notes"):
    return feed.call(lambda app: app.stomp.convert_and_send_to_user(user, destination, payload))


def test_connected_names_the_user_and_unknown_logins_stay_anonymous(feed):
    with StompClient(feed, headers={"login": "alice", "passcode": "alice"}) as alice:
        assert alice.connected.headers["user-name"] == "alice"
    with StompClient(feed, headers={"login": "guest", "passcode": "guest"}) as guest:  # not a user we know
        assert "user-name" not in guest.connected.headers
    with StompClient(feed) as nobody:
        assert "user-name" not in nobody.connected.headers
        assert feed.call(lambda app: [s.user for s in app.stomp.sessions]) == [None]


def test_a_wrong_passcode_is_an_error_then_close(feed):
    with pytest.raises(StompErrorFrame) as info:
        StompClient(feed, headers={"login": "alice", "passcode": "bob"})
    assert info.value.frame.headers["message"] == "authentication failed"
    assert feed.call(lambda app: len(app.stomp.sessions)) == 0


def test_two_users_each_get_only_their_own(feed):
    with login(feed, "alice") as alice, login(feed, "bob") as bob:
        assert to_user(feed, "alice", {"n": 1}) == 1
        assert to_user(feed, "bob", {"n": 2}) == 1
        got_alice, got_bob = alice.receive_message(), bob.receive_message()
        assert json.loads(got_alice.text) == {"n": 1} and json.loads(got_bob.text) == {"n": 2}
        # the MESSAGE names what the client subscribed to, not the session's resolved queue
        assert got_alice.headers["destination"] == got_bob.headers["destination"] == "/user/queue/notes"
        # bob's next MESSAGE is the next one for bob: alice's never reached him (same for alice)
        to_user(feed, "bob", {"n": 3})
        to_user(feed, "alice", {"n": 4})
        assert json.loads(bob.receive_message().text) == {"n": 3}
        assert json.loads(alice.receive_message().text) == {"n": 4}


def test_every_session_of_a_user_and_not_another_users(feed):
    with login(feed, "alice") as laptop, login(feed, "alice") as phone, login(feed, "bob") as bob:
        assert to_user(feed, "alice", "hi") == 2
        assert laptop.receive_message().text == phone.receive_message().text == '"hi"'
        to_user(feed, "bob", "yours")
        assert bob.receive_message().text == '"yours"'
        assert to_user(feed, "carol", "nobody") == 0  # no session: nothing sent, no error


def test_sessions_get_distinct_queues_with_springs_naming(feed):
    with login(feed, "alice") as one, login(feed, "alice") as two:
        queues = feed.call(lambda app: sorted(d for s in app.stomp.sessions for d in s.subscriptions.values()))
        ids = feed.call(lambda app: sorted(s.session_id for s in app.stomp.sessions))
        assert queues == sorted(f"/queue/notes-user{sid}" for sid in ids) and len(set(queues)) == 2


def test_unsubscribe_ends_user_messages(feed):
    with StompClient(feed, headers={"login": "alice", "passcode": "alice"}) as alice:
        sub = alice.subscribe("/user/queue/notes")
        alice.unsubscribe(sub)
        assert to_user(feed, "alice", "late") == 0


@pytest.mark.parametrize("command, destination", [
    ("SUBSCRIBE", "/queue/notes-user{alice}"),   # another session's resolved queue, by name
    ("SUBSCRIBE", "/queue/notes"),
    ("SUBSCRIBE", "/user/alice/queue/notes"),    # Spring's sending form: not a subscription here
    ("SUBSCRIBE", "/user/queue/"),
    ("SEND", "/user/alice/queue/notes"),         # clients do not send to users: a handler does
    ("SEND", "/user/queue/notes"),
    ("SEND", "/queue/notes-user{alice}"),
])
def test_another_users_queue_cannot_be_reached(feed, command, destination):
    with login(feed, "alice") as alice, login(feed, "bob") as bob:
        alice_session = feed.call(lambda app: next(s.session_id for s in app.stomp.sessions if s.user == "alice"))
        target = destination.format(alice=alice_session)
        with pytest.raises(StompErrorFrame) as info:
            if command == "SUBSCRIBE":
                bob.subscribe(target)
            else:
                bob.send(target, "sneaky", receipt=True)
        assert info.value.frame.headers["message"] == "unknown destination"
        with pytest.raises(ConnectionClosed):
            bob.receive(5)
        to_user(feed, "alice", "still private")
        assert alice.receive_message().text == '"still private"'


def test_send_to_user_answers_every_session_of_the_sender_only(feed):
    with login(feed, "alice") as laptop, login(feed, "alice") as phone, login(feed, "bob") as bob:
        laptop.send("/app/note", "from the laptop")
        expected = {"for": "alice", "text": "from the laptop"}
        assert json.loads(laptop.receive_message().text) == json.loads(phone.receive_message().text) == expected
        bob.send("/app/note", "from bob")
        assert json.loads(bob.receive_message().text) == {"for": "bob", "text": "from bob"}


def test_send_to_user_without_broadcast_answers_the_sending_session(feed):
    with login(feed, "alice") as laptop, login(feed, "alice") as phone:
        phone.send("/app/mine", "phone only", headers={"x-tag": "p"})
        assert json.loads(phone.receive_message().text) == {"for": "alice", "text": "phone only", "receipt": "p"}
        laptop.send("/app/mine", "laptop only", headers={"x-tag": "l"})
        assert json.loads(laptop.receive_message().text)["text"] == "laptop only"  # not the phone's answer
        to_user(feed, "alice", "marker")
        assert phone.receive_message().text == '"marker"'                         # nor the laptop's


def test_an_anonymous_sender_gets_the_answer_on_its_own_session(feed):
    with StompClient(feed) as one, StompClient(feed) as two:
        one.subscribe("/user/queue/notes")
        two.subscribe("/user/queue/notes")
        one.send("/app/note", "who am i")
        assert json.loads(one.receive_message().text) == {"for": None, "text": "who am i"}
        two.send("/app/note", "and me")
        assert json.loads(two.receive_message().text)["text"] == "and me"


def test_send_to_user_defaults_to_queue_plus_the_mapping(feed):
    with StompClient(feed, headers={"login": "bob", "passcode": "bob"}) as bob:
        bob.subscribe("/user/queue/default")
        bob.send("/app/default", {"x": 1})
        message = bob.receive_message()
        assert message.headers["destination"] == "/user/queue/default" and json.loads(message.text) == {"echo": {"x": 1}}


def test_decorators_and_the_template_refuse_wrong_destinations(feed):
    with pytest.raises(ValueError):
        send_to_user("/topic/x")
    with pytest.raises(ValueError):
        send_to("/queue/x")
    from servers.feed.stomp import DestinationError

    with pytest.raises(DestinationError):
        feed.call(lambda app: app.stomp.convert_and_send_to_user("alice", "/topic/x", "no"))


def test_users_are_the_brokers_table(feed):
    feed.call(lambda app: app.stomp.users.update({"carol": "s3cret"}))
    with StompClient(feed, headers={"login": "carol", "passcode": "s3cret"}) as carol:
        assert carol.connected.headers["user-name"] == "carol"


# -- stomp.py, a client we did not write ---------------------------------------------------------------

class Listener(stomp.ConnectionListener):
    def __init__(self):
        self.frames = queue.Queue()

    def on_message(self, frame):
        self.frames.put(("MESSAGE", frame))

    def on_error(self, frame):
        self.frames.put(("ERROR", frame))

    def on_receipt(self, frame):
        self.frames.put(("RECEIPT", frame))

    def next(self, kind):
        while True:
            got, frame = self.frames.get(timeout=10)
            if got == kind:
                return frame


def stomp_py(feed, user, passcode=None):
    connection = stomp.WSStompConnection([(feed.host, feed.port)], ws_path="/stomp")
    listener = Listener()
    connection.set_listener("test", listener)
    connection.connect(user, user if passcode is None else passcode, wait=passcode is None)
    return connection, listener


def test_stomp_py_user_queue_two_users_and_send_to_user(feed):
    alice, alice_frames = stomp_py(feed, "alice")
    bob, bob_frames = stomp_py(feed, "bob")
    try:
        for connection in (alice, bob):
            connection.subscribe("/user/queue/notes", id="notes", receipt="ready")
        alice_frames.next("RECEIPT"), bob_frames.next("RECEIPT")
        assert to_user(feed, "alice", {"for": "alice"}) == 1
        to_user(feed, "bob", {"for": "bob"})
        got = alice_frames.next("MESSAGE")
        assert json.loads(got.body) == {"for": "alice"} and got.headers["destination"] == "/user/queue/notes"
        assert json.loads(bob_frames.next("MESSAGE").body) == {"for": "bob"}
        alice.send("/app/note", "via stomp.py")
        assert json.loads(alice_frames.next("MESSAGE").body) == {"for": "alice", "text": "via stomp.py"}
        to_user(feed, "bob", "next for bob")
        assert bob_frames.next("MESSAGE").body == '"next for bob"'  # alice's answer never reached bob
    finally:
        alice.disconnect()
        bob.disconnect()


def test_stomp_py_wrong_passcode_gets_an_error(feed):
    connection, listener = stomp_py(feed, "alice", passcode="wrong")
    try:
        frame = listener.next("ERROR")
        assert frame.headers["message"] == "authentication failed"
    finally:
        try:
            connection.disconnect()
        except Exception:
            pass
