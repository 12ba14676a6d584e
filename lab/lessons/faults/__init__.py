"""Fault injection on a QR-login cluster: what each fix loses when something breaks mid-login.

Why a package of its own: lesson 09, ``tests/test_faults.py`` and ``benchmarks/load.py`` must run
the *same* scenario and count the *same* way, or "lost" would mean three things.

A scenario runs ``n`` whole logins through the cluster's balancer. Each browser holds a
:class:`BrowserSession`: its push channel (poll, long poll, SSE or WebSocket) plus what a real
page adds around it - it notices a dropped connection and reconnects after a back-off
(:class:`Backoff`), resuming where it left off (SSE ``Last-Event-ID``, the WebSocket's
``?after=v``, the long poll's ``state=``), and it records every state that reached it on the
wire, before de-duplication. The phone retries a step that hit a dead server (502/599), as an app
would. One fault is injected at a fixed point of the logins:

===================  =======================================================================
fault                what happens
===================  =======================================================================
``crash``            the server holding most browser channels dies (in-process: every
                     connection dropped at once; ``processes=True`` cluster: SIGKILL); the
                     balancer skips it once a request has failed on it (passive check)
``redis_restart``    Redis saves a snapshot (``SAVE``), stops and starts again from it
``redis_killed``     Redis is SIGKILLed (no ``SAVE``) and restarts with what its persistence
                     kept: nothing here, so every ticket in flight is gone
``backend_removed``  the balancer stops sending to one server (a deploy drain); the server
                     and the browser channels it holds stay up
``slow_consumer``    one browser's page takes nothing in for ``stall_s`` (a busy tab, a tunnel)
``storm``            every connection on every server dropped at once: all browsers reconnect
===================  =======================================================================

Counted per login (one row of :attr:`FaultRun.records`):

- ``completed`` - the browser saw ``confirmed`` and redeemed the ticket;
- ``lost`` - changes of the login (scanned, confirmed) that never reached the browser
  (a login that never completed has lost at least ``confirmed``);
- ``duplicated`` - states that reached it more than once (a reconnect without resume);
- ``dropped`` - its channel ended after the fault (it had to reconnect);
- ``late`` - completed, but more than ``deadline_s`` after the phone's confirm;
- ``reconnected_s`` - from the fault until this browser's channel was back (dropped ones only);
- ``recover_s`` (per run) - from the fault until a fresh login completes again.

Determinism: in the lockstep scenarios every browser holds its channel before the fault; the
phone acts after it; browsers whose channel dropped reconnect only once the phone is done ("the
phone acted within the reconnect delay"; polling transports simply ask again at once). So which
logins are hit is known from where their channels were, and the counts are the same on every
run: ``streams`` with SSE or WebSocket resumes from its log and loses nothing; ``pubsub`` (and
every fix without a log) hands a resuming browser only the current state, so a state published
while it was away is lost.

One module per topic, each short enough to read in one sitting:

- :mod:`~lab.lessons.faults.browser`: :class:`BrowserSession`, the page that reconnects and
  resumes, and its :class:`Backoff`;
- :mod:`~lab.lessons.faults.logins`: :func:`run_logins`, ``n`` logins with a fault in the
  middle, one record each (:class:`FaultRun`);
- :mod:`~lab.lessons.faults.kinds`: the faults themselves (:data:`FAULTS`, ``crash_fault``...);
- :mod:`~lab.lessons.faults.scenarios`: one call per scenario (:func:`crash_browser_server`...),
  the storm's request rate and :func:`fault_matrix`;
- :mod:`~lab.lessons.faults.summary`: :func:`summarize` and :func:`plot_heatmap`.
"""
from __future__ import annotations

from lab.lessons.faults.browser import EVENTSOURCE_LIKE, JITTERED, Backoff, BrowserSession
from lab.lessons.faults.kinds import (FAULTS, backend_removed_fault, crash_fault, drop_all_fault,
                                      redis_restart_fault, slow_consumer_fault)
from lab.lessons.faults.logins import RETRYABLE, STATES_OF_A_LOGIN, FaultRun, run_logins
from lab.lessons.faults.scenarios import (crash_browser_server, dead_server_window, fault_matrix, reconnect_storm,
                                          redis_survival, requests_per_bin, restart_redis, slow_consumer,
                                          stop_backend)
from lab.lessons.faults.summary import plot_heatmap, summarize

__all__ = ["Backoff", "EVENTSOURCE_LIKE", "JITTERED", "BrowserSession", "FaultRun", "FAULTS", "run_logins",
           "crash_browser_server", "dead_server_window", "redis_survival", "restart_redis", "stop_backend", "slow_consumer", "reconnect_storm",
           "fault_matrix", "summarize", "plot_heatmap", "requests_per_bin", "STATES_OF_A_LOGIN",
           "RETRYABLE", "crash_fault", "redis_restart_fault", "backend_removed_fault", "slow_consumer_fault",
           "drop_all_fault"]
