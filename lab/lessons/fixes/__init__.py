"""Lesson 08's measurements: each fix of the QR-login bug switched on in a cluster, and what it costs.

Lesson 07 showed the bug: the phone's confirm reaches server B, the browser's push channel is on
A, and B has no way to reach it. Lesson 08 switches on each fix (``start_cluster(fix=...)``) and
measures the same things for every one, so the closing table compares like with like:

- :func:`success_matrix`: random users (lesson 07's :func:`~lab.lessons.qr_bug.traffic`)
  per fix × balancer × transport; every login must complete.
- :func:`latency_and_cost`: logins one at a time (nothing queues), confirm → browser latency per
  fix against ``none`` on one server, and per login the Redis commands (Redis's own count) and
  the messages and bytes that crossed to the server holding the channel (each hub's ``stats``).
- :func:`hop_latency`: the hop between the servers alone (publish on B → delivered on A), many
  events, the fixes side by side.
- :func:`scaling`: the same costs as the number of servers grows.
- :func:`idle_cost`: Redis commands per second with channels open and nothing happening.
- :func:`moved_share` / :func:`in_flight_when_adding`: ``ticket_hash`` when a server is added.
- :func:`reconnect_gap`: a change made while the browser reconnects (``pubsub`` loses the live
  event, ``streams`` replays it).
- :class:`PubSubExerciseBase`, :func:`start_pair`, :func:`login_across`: the scaffolding of the
  exercises.

Every cluster here gets a Redis of its own (``start_cluster`` starts one), so Redis's command
count belongs to that fix alone.

One module per topic: :mod:`~lab.lessons.fixes.catalogue` (:data:`FIXES`, their delivery
semantics and the real systems built the same way), :mod:`~lab.lessons.fixes.clusters`
(starting a fix's cluster, counting its costs), :mod:`~lab.lessons.fixes.success`,
:mod:`~lab.lessons.fixes.latency`, :mod:`~lab.lessons.fixes.scale`,
:mod:`~lab.lessons.fixes.rehashing`, :mod:`~lab.lessons.fixes.reconnect`,
:mod:`~lab.lessons.fixes.summary` (the closing table) and :mod:`~lab.lessons.fixes.exercise`.
"""
from __future__ import annotations

from lab.lessons.fixes.catalogue import FIXES, HELD, ON_REDIS_RESTART, ON_SERVER_DEATH, OPERATIONS, REAL_SYSTEMS, SEMANTICS
from lab.lessons.fixes.clusters import cluster_counters, nginx_available, start_fix_cluster
from lab.lessons.fixes.exercise import PubSubExerciseBase, login_across, start_pair, start_with_hub
from lab.lessons.fixes.latency import hop_latency, hop_table, latency_and_cost, latency_table, median_interval
from lab.lessons.fixes.reconnect import reconnect_gap
from lab.lessons.fixes.rehashing import in_flight_when_adding, moved_share, moved_table
from lab.lessons.fixes.scale import held_connections, idle_cost, scaling
from lab.lessons.fixes.success import success_matrix, success_table
from lab.lessons.fixes.summary import closing_table
from servers.clients.qr import TRANSPORTS

__all__ = ["FIXES", "TRANSPORTS", "REAL_SYSTEMS", "SEMANTICS", "nginx_available", "start_fix_cluster",
           "cluster_counters", "success_matrix", "success_table", "latency_and_cost", "latency_table",
           "scaling", "idle_cost", "held_connections", "HELD", "ON_REDIS_RESTART", "ON_SERVER_DEATH", "OPERATIONS", "hop_latency", "hop_table", "median_interval", "moved_share", "moved_table", "in_flight_when_adding", "reconnect_gap",
           "closing_table", "PubSubExerciseBase", "start_with_hub", "start_pair", "login_across"]
