"""Short polling and publishing: ``POST /feed/publish`` and ``GET /feed/poll?after=N``.

Short polling is the simplest push there is: no push at all. The client asks "anything after
N?" every few seconds and gets an answer at once, possibly empty. The cursor ``after`` is what
makes it lossless: the client passes the last seq it saw. If the events it asks for have been
dropped from the bounded buffer, the answer says so in ``missed`` (inclusive seq range)::

    200 {"events": [...]}                                   # the usual case
    200 {"events": [...], "missed": {"from": 3, "to": 41}}  # 3..41 no longer buffered

A feed that restarted starts its seqs again at 1, so a client's cursor from before the restart
names events this run never had. Every answer carries the buffer's epoch in ``X-Feed-Epoch`` (as
the SSE stream does); a client that sends it back as ``?epoch=E`` learns of a restart at once::

    200 {"events": [<every buffered event>], "reset": {"epoch": "9f2c41d0", "first": 1}}

``reset`` says: forget your cursor, the seqs start again from ``first`` (and ``missed``, if any,
is this run's range no longer buffered). Without ``epoch`` the answer is as before.

The poll answer is conditional (RFC 9110 §13.1.2): it carries an ``ETag`` that changes exactly
when the answer for that cursor changes, and a request whose ``If-None-Match`` names it gets
``304 Not Modified`` with no body. The events are never changed once published, so the
validator is computed from the buffer's state, without building the answer.
"""
from __future__ import annotations

from typing import Any

from servers.limits import rate_limited
from servers.web import ApiError, BaseHandler

__all__ = ["PublishHandler", "PollHandler", "NoCacheMixin", "events_body", "read_events"]


def events_body(events: list[dict[str, Any]], missed: dict[str, int] | None) -> dict[str, Any]:
    """The JSON body every HTTP read route answers with."""
    body: dict[str, Any] = {"events": events}
    if missed:
        body["missed"] = missed
    return body


def read_events(handler: Any, after: int) -> tuple[dict[str, Any] | None, bool]:
    """The poll answer for ``after`` as both poll routes give it, and whether it is a reset: the
    client's ``?epoch=`` names another run of the feed (it restarted). Sets ``X-Feed-Epoch``.
    ``None`` when there is nothing to say (no event after ``after``, nothing missed, no reset)."""
    buffer = handler.application.buffer
    handler.set_header("X-Feed-Epoch", buffer.epoch)
    epoch = handler.get_argument("epoch", None)
    if epoch is not None and epoch != buffer.epoch:
        body = events_body(*buffer.since(0))
        body["reset"] = {"epoch": buffer.epoch, "first": buffer.first_seq}
        return body, True
    events, missed = buffer.since(after)
    return (events_body(events, missed) if events or missed else None), False


class PublishHandler(BaseHandler):
    """``POST /feed/publish`` with ``{"data": <any JSON>}`` answers ``201 {"seq": n}``."""

    @rate_limited  # 429 + Retry-After over the address's API rate (servers.limits)
    def post(self) -> None:
        limit = self.application.settings["max_publish_bytes"]
        if len(self.request.body) > limit:
            raise ApiError(413, "too_large", f"The body is {len(self.request.body)} bytes; the limit is {limit}.")
        body = self.json_body(required=("data",))
        event = self.application.publish(body["data"])
        self.write_json({"seq": event["seq"]}, status=201)


class NoCacheMixin:
    """Poll answers change from one moment to the next: caches must ask again (``no-cache``), and
    Tornado's automatic ETag (a hash of the body) is off; :class:`PollHandler` sets its own."""

    def compute_etag(self) -> None:
        return None

    def set_default_headers(self) -> None:
        super().set_default_headers()  # type: ignore[misc]
        self.set_header("Cache-Control", "no-cache")  # type: ignore[attr-defined]


class PollHandler(NoCacheMixin, BaseHandler):
    """``GET /feed/poll?after=N[&epoch=E]``: the buffered events with seq > N, at once (possibly none).

    With ``If-None-Match`` naming the answer's ``ETag``: ``304 Not Modified``, no body.
    """

    def get(self) -> None:
        after = self.int_argument("after", default=0, minimum=0)
        body, reset = read_events(self, after)
        if reset:  # a restarted feed: always a full answer (no conditional)
            self.write_json(body)
            return
        self.set_header("ETag", self.etag_for(self.application.buffer, after))
        if self.check_etag_header():  # If-None-Match names this answer (weak comparison, or "*")
            self.set_status(304)      # Not Modified: the client already has these bytes
            self.finish()
            return
        self.write_json(body or events_body([], None))

    @staticmethod
    def etag_for(buffer: Any, after: int) -> str:
        """A strong validator that changes exactly when the answer for ``after`` changes."""
        if after >= buffer.last_seq:
            return '"empty"'  # {"events":[]}: the same bytes whatever the buffer holds
        # events after `after` up to last_seq; what they are (and what was dropped) depends on
        # nothing else, except which buffer (a restarted server has another epoch)
        return f'"{buffer.epoch}-{after}-{buffer.last_seq}"'
