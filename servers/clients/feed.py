"""Every client of the feed server, in one place: ``from servers.clients.feed import ...``.

=============  ===========================================  ======================================
technique      sync (a cell)                                async (many at once)
=============  ===========================================  ======================================
publish        ``publish(feed, data) -> seq``               ``await apublish(feed, data)``
short polling  ``poll(feed, after)``, ``iter_poll(...)``    ``await apoll(feed, after)``
long polling   ``longpoll(feed, after, timeout)``,          ``await alongpoll(feed, after, timeout)``
               ``iter_longpoll(...)``
SSE            ``SSEStream(feed, last_event_id)``           ``AsyncSSEStream(feed)``
WebSocket      ``FeedWebSocket(feed, after)``               ``await AsyncFeedWebSocket.connect(feed)``
STOMP          ``StompClient(feed)``                        ``await AsyncStompClient.connect(feed)``
=============  ===========================================  ======================================

``feed`` is a base URL (``http://127.0.0.1:PORT``) or a server handle. Every received event has
``received_at`` (``time.time()`` on arrival): latency is ``received_at - sent_at``.
``wait_until(condition)`` waits for server state (e.g. a long poll being held) without guessing a sleep.
"""
from servers.clients._common import wait_until
from servers.clients.http import alongpoll, apoll, apublish, iter_longpoll, iter_poll, longpoll, poll, publish
from servers.clients.sse import AsyncSSEStream, SSEStream, sse_message
from servers.clients.stomp import AsyncStompClient, StompClient, StompErrorFrame
from servers.clients.ws import AsyncFeedWebSocket, ConnectionClosed, FeedWebSocket

__all__ = ["publish", "poll", "longpoll", "iter_poll", "iter_longpoll", "apublish", "apoll", "alongpoll",
           "SSEStream", "AsyncSSEStream", "sse_message", "FeedWebSocket", "AsyncFeedWebSocket", "ConnectionClosed",
           "StompClient", "AsyncStompClient", "StompErrorFrame", "wait_until"]
