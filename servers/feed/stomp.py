"""STOMP 1.2 over WebSocket: ``GET /stomp``, a small broker in the manner of Spring's simple broker.

Destinations:

- ``/topic/feed`` - SUBSCRIBE gets a MESSAGE per feed event (body: the event JSON, plus a
  ``seq`` header); SEND publishes its JSON body (or UTF-8 text) as a feed event.
- ``/topic/<x>`` - SEND broadcasts the body, any bytes, to every subscriber of ``/topic/<x>``.
- ``/app/<x>`` - SEND goes to the handler mapped to ``/<x>`` with :func:`message_mapping` (the
  body JSON-decoded, else as text, else - not UTF-8 - as bytes); its return value
  (JSON-encoded) is sent to the :func:`send_to` destination, by default ``/topic/<x>`` as in
  Spring. Anything else is an unknown destination: ERROR, then close.

Spring's controller::

    @MessageMapping("/hello") @SendTo("/topic/greetings")
    public Greeting greet(HelloMessage message) {...}

is here::

    class Greetings:
        @message_mapping("/hello")
        @send_to("/topic/greetings")
        def greet(self, message):               # message: the SEND body, JSON-decoded
            return {"content": f"Hello, {message['name']}!"}

    app = make_feed_app(stomp_controllers=[Greetings()])
    # or, on a running server: handle.call(lambda app: app.stomp.add_controller(Greetings()))

The decorators only mark the function (no global registry: several servers, several route
tables); :meth:`StompBroker.add_controller` reads the marks. ``make_feed_app`` installs
``GreetingController`` (exactly the mapping above) unless told otherwise.

User destinations, as Spring's (reference: "WebSocket > STOMP > User Destinations"):

- **who the user is**: the CONNECT frame's ``login`` and ``passcode`` headers (STOMP 1.2,
  "CONNECT or STOMP Frame"), checked against ``app.stomp.users`` (name -> passcode; by default
  :data:`DEMO_USERS`). A known ``login`` with a wrong passcode gets ERROR; a ``login`` that names
  no known user, or none, leaves the session anonymous (clients that always send, say,
  ``guest``/``guest`` keep working). CONNECTED then carries ``user-name`` (as Spring's does).
  Spring by default takes the user from the HTTP handshake (its ``Principal``) and ignores these
  headers; authenticating on CONNECT is its "Token Authentication" variant (a
  ``ChannelInterceptor`` that calls ``accessor.setUser(...)``).
- **SUBSCRIBE** ``/user/queue/<x>``: the broker maps it to that session's own queue,
  ``/queue/<x>-user<session id>`` (Spring's naming), and MESSAGEs on it say
  ``destination:/user/queue/<x>``, the name the client subscribed to. A client may not subscribe
  to ``/queue/...`` itself, nor SEND to ``/user/...`` or ``/queue/...``: ERROR.
- **server code** :meth:`StompBroker.convert_and_send_to_user` (``convertAndSendToUser``) reaches
  every session of that user subscribed to the queue, and no other session;
- **a handler** marked :func:`send_to_user` (``@SendToUser``) answers the sender's user: all its
  sessions, or with ``broadcast=False`` only the session that sent; an anonymous sender gets the
  answer on its own session only (as in Spring). A handler with a parameter named ``user`` gets the
  sender's user name (``None`` when anonymous), as a Spring handler gets its ``Principal``.

The per-connection protocol (CONNECT, heart-beats, SUBSCRIBE...) is in
:mod:`servers.feed.stomp_session`.
"""
from __future__ import annotations

import inspect
import itertools
import json
from collections import Counter
from typing import Any, Callable

from servers.web import loads_json
from servers.wire.stomp import Frame

__all__ = ["message_mapping", "send_to", "send_to_user", "StompBroker", "GreetingController", "DestinationError",
           "AuthenticationError", "DEMO_USERS", "user_queue"]

#: Who may log in on CONNECT (``login``/``passcode``) unless ``app.stomp.users`` says otherwise.
DEMO_USERS = {"alice": "alice", "bob": "bob"}
USER_PREFIX = "/user"


def message_mapping(destination: str) -> Callable:
    """Mark a handler for SEND frames to ``/app`` + ``destination`` (Spring's ``@MessageMapping``)."""
    if not destination.startswith("/"):
        raise ValueError("a mapping starts with '/', e.g. '/hello' for SEND to /app/hello")

    def mark(fn: Callable) -> Callable:
        fn._stomp_mapping = destination
        return fn

    return mark


def send_to(destination: str) -> Callable:
    """Where the handler's return value goes (Spring's ``@SendTo``); must be a ``/topic/...``."""
    if not destination.startswith("/topic/"):
        raise ValueError("@send_to needs a /topic/... destination")

    def mark(fn: Callable) -> Callable:
        fn._stomp_send_to = destination
        return fn

    return mark


def send_to_user(destination: str | None = None, broadcast: bool = True) -> Callable:
    """The return value goes to the sender's user (Spring's ``@SendToUser``): ``/user/queue/...``
    of every session of that user, or of the sending session only with ``broadcast=False``.
    ``destination`` is a ``/queue/...``; by default ``/queue`` + the mapping, as in Spring."""
    if destination is not None and not _is_queue(destination):
        raise ValueError("@send_to_user needs a /queue/... destination, e.g. '/queue/replies'")

    def mark(fn: Callable) -> Callable:
        fn._stomp_send_to_user = (destination, broadcast)
        return fn

    return mark


def user_queue(destination: str, session_id: str) -> str:
    """The session's own queue for ``/user/queue/<x>``: ``/queue/<x>-user<session id>`` (Spring's)."""
    return destination[len(USER_PREFIX):] + "-user" + session_id


def _is_queue(destination: str) -> bool:
    return destination.startswith("/queue/") and len(destination) > len("/queue/")


class AuthenticationError(Exception):
    """CONNECT named a known user with the wrong passcode (sent to the client as ERROR)."""


class DestinationError(Exception):
    """A frame named a destination this broker does not serve (sent to the client as ERROR)."""


class GreetingController:
    """The demo controller of Spring's STOMP guide: ``/app/hello`` answers on ``/topic/greetings``."""

    @message_mapping("/hello")
    @send_to("/topic/greetings")
    def greet(self, message: Any) -> dict:
        name = message.get("name", "stranger") if isinstance(message, dict) else message
        return {"content": f"Hello, {name}!"}


class StompBroker:
    """One per :class:`~servers.feed.app.FeedApp` (``app.stomp``): sessions, topics and ``/app`` routes."""

    FEED_TOPIC = "/topic/feed"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sessions: set[Any] = set()
        self.routes: dict[str, tuple[Callable, str]] = {}  # mapping -> (handler, /topic/... or /user/queue/...)
        self.users: dict[str, str] = dict(DEMO_USERS)  # login -> passcode
        self._message_ids = itertools.count(1)
        self._session_ids = itertools.count(1)
        # acked, nacked, redelivered, discarded: what became of the messages sent on client and
        # client-individual subscriptions (servers.feed.stomp_session says the policy)
        self.stats: Counter = Counter()

    def new_session_id(self) -> str:
        """The ``session`` header of a CONNECTED frame, unique within this server."""
        return f"{self.app.name}-{next(self._session_ids)}"

    def authenticate(self, login: str | None, passcode: str | None) -> str | None:
        """The session's user from CONNECT's ``login``/``passcode``; ``None``: anonymous (module docstring)."""
        if login is None or login not in self.users:
            return None
        if passcode != self.users[login]:
            raise AuthenticationError(f"Wrong passcode for {login!r}.")
        return login

    # --- routes ---------------------------------------------------------------------------
    def add_controller(self, controller: Any) -> list[str]:
        """Register every ``@message_mapping`` method of ``controller`` (or one marked function)."""
        candidates = [controller] if callable(controller) and hasattr(controller, "_stomp_mapping") else [
            getattr(controller, name) for name in dir(controller) if not name.startswith("__")]
        added = []
        for fn in candidates:
            mapping = getattr(fn, "_stomp_mapping", None)
            if mapping is None:
                continue
            target = getattr(fn, "_stomp_send_to", None) or "/topic" + mapping
            if hasattr(fn, "_stomp_send_to_user"):
                target = USER_PREFIX + (fn._stomp_send_to_user[0] or "/queue" + mapping)
            self.routes[mapping] = (fn, target)
            added.append(mapping)
        return added

    async def dispatch(self, destination: str, frame: Frame, session: Any = None) -> None:
        """Run the handler mapped to ``/app/<x>`` and send its non-None return value on: to a
        topic (``@send_to``), or to the sending session's user (``@send_to_user``)."""
        route = self.routes.get(destination[len("/app"):])
        if route is None:
            known = ", ".join("/app" + m for m in sorted(self.routes)) or "none"
            raise DestinationError(f"No @message_mapping for {destination!r}; mapped: {known}.")
        fn, target = route
        payload = decode_body(frame)
        user = getattr(session, "user", None)
        extra = {"user": user} if "user" in _parameters(fn) else {}
        result = fn(payload, frame, **extra) if _wants_frame(fn) else fn(payload, **extra)
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            return
        body = json.dumps(result).encode("utf-8")
        if not target.startswith(USER_PREFIX + "/"):
            self.send(target, body, "application/json")
        elif user is not None and fn._stomp_send_to_user[1]:  # broadcast: every session of the user
            self.convert_and_send_to_user(user, target[len(USER_PREFIX):], result)
        elif session is not None:  # broadcast=False, or anonymous: the sending session only
            self._to_user_queue([session], target, body, "application/json")

    # --- user destinations ----------------------------------------------------------------------
    def convert_and_send_to_user(self, user: str, destination: str, payload: Any) -> int:
        """Spring's ``convertAndSendToUser(user, "/queue/x", payload)``: a MESSAGE to every session of
        ``user`` subscribed to ``/user/queue/x``, to no one else. ``payload``: bytes as they are,
        anything else JSON-encoded. Returns how many MESSAGEs were sent."""
        if not _is_queue(destination):
            raise DestinationError(f"A user destination is a /queue/<name>, not {destination!r}.")
        if isinstance(payload, bytes):
            body, content_type = payload, None
        else:
            body, content_type = json.dumps(payload).encode("utf-8"), "application/json"
        sessions = [s for s in self.sessions if s.user == user]
        return self._to_user_queue(sessions, USER_PREFIX + destination, body, content_type)

    def _to_user_queue(self, sessions: list, destination: str, body: bytes, content_type: str | None) -> int:
        sent = 0
        for session in sessions:
            for sub_id in session.subscriptions_to(user_queue(destination, session.session_id)):
                headers = {"destination": destination, "message-id": str(next(self._message_ids)),
                           "subscription": sub_id, **({"content-type": content_type} if content_type else {})}
                session.send_message(Frame("MESSAGE", headers, body))
                sent += 1
        return sent

    # --- topics -----------------------------------------------------------------------------
    def send(self, destination: str, body: bytes, content_type: str | None = None) -> None:
        """A SEND to ``/topic/...``: the feed topic publishes an event, others broadcast."""
        if destination == self.FEED_TOPIC:
            self.app.publish(decode_body(Frame("SEND", {"content-type": content_type or ""}, body)))
        elif destination.startswith("/topic/") and len(destination) > len("/topic/"):
            self.broadcast(destination, body, content_type)
        else:
            raise DestinationError(f"Unknown destination {destination!r}: use /topic/<name> or /app/<name> "
                                   "(user destinations are for the server to send to).")

    def broadcast(self, destination: str, body: bytes, content_type: str | None = None,
                  extra: dict[str, str] | None = None) -> int:
        """A MESSAGE to every subscription on ``destination``; returns how many were sent."""
        sent = 0
        for session in list(self.sessions):
            for sub_id in session.subscriptions_to(destination):
                headers = {"destination": destination, "message-id": str(next(self._message_ids)),
                           "subscription": sub_id}
                if content_type:
                    headers["content-type"] = content_type
                headers.update(extra or {})
                session.send_message(Frame("MESSAGE", headers, body))  # adds ack when the subscription wants it
                sent += 1
        return sent

    def deliver_event(self, event: dict) -> None:
        """Called by ``app.publish``: the event to every subscriber of ``/topic/feed``."""
        if self.sessions:
            body = json.dumps(event, separators=(",", ":")).encode("utf-8")
            self.broadcast(self.FEED_TOPIC, body, "application/json", {"seq": str(event["seq"])})


def decode_body(frame: Frame) -> Any:
    """The SEND body as JSON when it parses, else as text; the bytes themselves when they are not
    UTF-8 (a body is any bytes: nothing is replaced)."""
    try:
        text = frame.body.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(frame.body)
    try:
        return loads_json(text)  # NaN or 1,000-deep nesting: kept as text
    except ValueError:
        return text


def _parameters(fn: Callable) -> list[str]:
    """Names of ``fn``'s positional parameters (``self`` excluded on a bound method)."""
    try:
        return [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []


def _wants_frame(fn: Callable) -> bool:
    """A second parameter, other than ``user``, gets the frame."""
    return len([name for name in _parameters(fn) if name != "user"]) >= 2
