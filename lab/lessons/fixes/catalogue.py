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

# What each fix keeps open, read from its code (servers/qrlogin/fixes/) and counted by
# :func:`~lab.lessons.fixes.scale.idle_cost` (``held_per_server``: Redis connections subscribed or blocked).
HELD = {
    "none": "nothing",
    "ticket_hash": "nothing",
    "pubsub": "1 Redis pub/sub connection per server (SUBSCRIBE per watched ticket)",
    "registry": "no held Redis connection; kept-alive HTTP connections to the other servers",
    "store": "no held connection; a read loop per watched ticket",
    "gateway": "nothing on the app servers (kept-alive HTTP to the push tier); the tier holds every browser",
    "streams": "1 Redis connection per server, blocked in one XREAD over every watched ticket",
}

# What happens when something dies, per lesson 09's fault matrix (lab/lessons/faults/): a server
# holding browser channels is killed mid-login ("crash"), and Redis restarts ("redis_restart":
# from a snapshot; "redis_killed": Redis SIGKILLed with no persistence, empty, which fails every login in flight whatever the fix).
ON_SERVER_DEATH = {
    "none": "-",
    "ticket_hash": "its tickets re-hash to the others; reconnecting browsers get the current state, a change made while away is lost",
    "pubsub": "browsers reconnect elsewhere and get the current state; a change published while away is lost",
    "registry": "as pubsub; its registry entries stay until they expire (30 s), each costing one failed forward",
    "store": "browsers reconnect elsewhere and get the current state; a change made while away is lost",
    "gateway": "an app server: nothing lost (it holds no channel); the push tier: every channel drops, state re-read",
    "streams": "nothing lost: the browser resumes from its last id and the log replays what it missed",
}
ON_REDIS_RESTART = {
    "none": "-",
    "ticket_hash": "from a snapshot: nothing lost; empty: logins in flight fail",
    "pubsub": "re-subscribes and reads each ticket once (catch-up); messages sent during the outage are gone",
    "registry": "writes its entries back; forwards resume",
    "store": "the next read sees the state again",
    "gateway": "publishes resume; the secret is re-agreed",
    "streams": "followers re-read from their last ids; from a snapshot nothing lost, empty: the log is gone (gap notice)",
}

# What each costs to run, beyond the app servers and Redis every fix already has.
OPERATIONS = {
    "none": "-",
    "ticket_hash": "a balancer keyed on the ticket in the path (nginx map + hash consistent); deploys strand moved logins",
    "pubsub": "nothing new; pub/sub keeps nothing, so no memory to size",
    "registry": "an internal route, a shared secret, servers that can reach each other; entry expiry to tune",
    "store": "Redis load per waiting browser per interval",
    "gateway": "a separate tier to deploy, scale and monitor; push routes split in the balancer",
    "streams": "stream memory (MAXLEN, expiry); Redis persistence if the log must survive a restart",
}
