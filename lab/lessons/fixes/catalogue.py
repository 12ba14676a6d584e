"""The fixes lesson 08 compares (:data:`FIXES`), what each promises, and who does the same in production.

These are the names the measurements loop over and the two columns of the closing table that
are not measured but stated: the delivery guarantee of each fix (:data:`SEMANTICS`) and the
real systems built the same way (:data:`REAL_SYSTEMS`), so a learner can recognise each fix
in the wild. ``none`` is the bug itself, the baseline every cost is measured against.

:data:`FIXES` is read from the servers' own registry (``servers.qrlogin.fixes.FIXES``), in its
order, so a fix added there is measured here too.
"""
from __future__ import annotations

from servers.qrlogin.fixes import BUG, FIXES as REGISTERED

FIXES = tuple(name for name in REGISTERED if name != BUG.name)  # the bug is the baseline, not a fix

# Which production systems solve the multi-node push problem the way each fix does, as their own
# documentation describes it: nginx's upstream ``hash ... consistent`` (nginx.org), HAProxy's
# ``balance hash``/``uri`` (docs.haproxy.org), Socket.IO's sticky sessions and its Redis and Redis
# Streams adapters (socket.io/docs/v4), Django Channels' channel layers
# (channels.readthedocs.io), Spring's STOMP broker relay and user registry (docs.spring.io),
# Pushpin (pushpin.org), Centrifugo's history and recovery (centrifugal.dev), Mercure
# (mercure.rocks) and AWS API Gateway's WebSocket APIs (docs.aws.amazon.com).
REAL_SYSTEMS = {
    "none": "a Map<id, SseEmitter> in one JVM; Spring's simple broker (not for clusters)",
    "ticket_hash": "nginx `hash $ticket consistent`, HAProxy path-derived keys; Socket.IO's sticky sessions are the client-keyed cousin",
    "pubsub": "Socket.IO Redis adapter, Django Channels' Redis pub/sub layer, Spring STOMP broker relay (RabbitMQ/ActiveMQ)",
    "registry": "Django Channels (routable channel names), Spring user registry in a cluster",
    "store": "no push product: the 'just poll the database' first version",
    "gateway": "Pushpin, Centrifugo, Mercure, AWS API Gateway WebSocket API",
    "streams": "Socket.IO Redis Streams adapter (connection state recovery), Centrifugo/Mercure history and recovery",
}

SEMANTICS = {
    "none": "only when the confirm lands on the channel's server",
    "ticket_hash": "exact while the server set is fixed; logins in flight on moved tickets break",
    "pubsub": "at most once (a change while the browser reconnects: live event lost, state re-read)",
    "registry": "at most once (a stale entry: a failed forward, counted)",
    "store": "latest state within one interval (short intermediate states may be skipped)",
    "gateway": "at most once per live event (state re-read on reconnect)",
    "streams": "every event, in order, also across a reconnect (replayed from the log)",
}
