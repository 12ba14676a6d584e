"""Lesson 07's pieces: QR logins through a cluster as real users make them, and what to count.

Why not just ``login_many`` in a loop: one simulated user makes the same fixed sequence of
requests every time (create, channel, phone login, scan, confirm, redeem). Under strict
``round_robin`` the number of requests between the browser's channel and the phone's confirm is
then always the same, so whether the two meet on one server is decided by that count modulo N:
every isolated login fails, or every one succeeds (with N = 3 all succeed - the bug hides on a
test bench). Starting many logins at the same instant is no better: they advance in lockstep and
the gap is again a constant. Real users arrive at random moments and take a human moment to
pick up the phone, so other users' requests fall between a user's own requests in a random
number; round robin then scatters that user's requests like a die, and the confirm meets the
channel with probability 1/N. :func:`traffic` models exactly that (random arrivals, a random
think time before the scan and before the confirm) with a seeded random generator.

- :func:`traffic` / :func:`traffic_async`: K logins as random users; one row per login with
  where each step went, ``ok``, and ``latency_s`` (confirm sent → browser saw it).
- :func:`isolated_logins`: K logins one after another, the test-bench pattern.
- :func:`success_vs_servers`: the main measurement, one cluster per N, several runs.
- :func:`success_table` / :func:`plot_success_vs_servers`: rate per group with its standard
  error, against the theory 1/N.
- :func:`meeting_table`: checks that a push login succeeds exactly when its confirm met its channel.
- :func:`login_trace`: the routing log of one login, each row labelled browser or phone.
- :func:`timeline`: one login on one clock (routing log, channel events, the confirm's answer).
- :func:`ip_hash_apart`: how often ``ip_hash`` puts a browser and its phone apart, per N.
- :func:`show_login_script`: the login page's JavaScript for one transport.
- :func:`clients_and_servers`: which servers each client was sent to (stickiness pins clients).
- :func:`start_cluster_with_route` / :func:`use_route`: plug a plain function
  ``route(path, query, backends) -> backend`` into our balancer (the exercise's ticket_hash).
- :func:`call_in_fresh_process`: call such a function again in a new Python process with another
  ``PYTHONHASHSEED`` (a policy must route a ticket the same way in every process).

One module per topic: :mod:`~lab.lessons.qr_bug.addresses` (each user's own addresses, and
who a routing-log address is, ``ip_hash`` over many users), :mod:`~lab.lessons.qr_bug.logins` (one
user's login, many users, the test-bench pattern, the login page's script), :mod:`~lab.lessons.qr_bug.success` (success against N and the
meeting check), :mod:`~lab.lessons.qr_bug.routing_log` (reading where requests went, one login's timeline),
:mod:`~lab.lessons.qr_bug.route_function` (a policy written as a plain function) and
:mod:`~lab.lessons.qr_bug.other_process` (the same function run in another process).
"""
from __future__ import annotations

from lab.lessons.qr_bug.addresses import BROWSER_OCTETS, PHONE_OCTETS, ip_hash_apart, user_addresses, who
from lab.lessons.qr_bug.logins import (CHANNEL_ROUTES, COLUMNS, LOGIN_PAGE, confirm_page_ticket, isolated_logins,
                                       login_page_script, open_login_page, show_login_script, traffic,
                                       traffic_async, user_login_async)
# Not public, but read from here by lesson 08's measurements and the tests: which server held a
# long poll when the confirm came, from the routing log.
from lab.lessons.qr_bug.logins import _fill_held_channels as _fill_held_channels
from lab.lessons.qr_bug.logins import _held_channels as _held_channels
from lab.lessons.qr_bug.other_process import call_in_fresh_process, function_source
from lab.lessons.qr_bug.route_function import FunctionRouter, RouteFunction, start_cluster_with_route, use_route
from lab.lessons.qr_bug.routing_log import browser_and_phone, clients_and_servers, login_trace, pinning, timeline
from lab.lessons.qr_bug.success import (meeting_table, plot_success_vs_servers, success_table, success_vs_servers,
                                        theory)
from servers.clients.qr import TRANSPORTS

__all__ = ["TRANSPORTS", "CHANNEL_ROUTES", "theory", "user_addresses", "who", "user_login_async", "traffic_async",
           "traffic", "isolated_logins", "open_login_page", "success_vs_servers", "success_table",
           "plot_success_vs_servers", "meeting_table", "login_trace", "browser_and_phone", "pinning",
           "clients_and_servers", "FunctionRouter", "use_route", "start_cluster_with_route", "COLUMNS",
           "BROWSER_OCTETS", "PHONE_OCTETS", "RouteFunction", "call_in_fresh_process", "function_source", "timeline", "ip_hash_apart",
           "login_page_script", "show_login_script", "LOGIN_PAGE", "confirm_page_ticket"]
