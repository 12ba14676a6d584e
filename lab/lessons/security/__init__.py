"""Lesson 10's attack demonstrations: guessable ids, cross-site WebSocket hijacking, QRLJacking.

Why this package exists: lesson 10 claims that our QR login resists attacks, and a claim is only
worth what a demonstration shows. So each attack here is real - real HTTP, real WebSocket
handshakes, real servers on free ports - and each is aimed first at something deliberately weak,
then at the real app. One module per attack:

- **Guessing ids** (:mod:`~lab.lessons.security.entropy`, :mod:`~lab.lessons.security.guessing`).
  :func:`measure_id_scheme` measures the entropy of an id generator from its output
  (``Σ log2(distinct characters seen at each position)``); :func:`expected_guess_seconds` turns
  bits into the expected time to hit a live ticket; :class:`WeakTicketApp` issues 6-digit ids
  and :func:`guess_live_ticket` guesses one for real over keep-alive HTTP.
- **Cross-site WebSocket hijacking (CSWSH)** (:mod:`~lab.lessons.security.hijacking`).
  :class:`VulnerableAccountSocket` is a cookie-authenticated WebSocket that *skips the Origin
  check* (the mistake, kept only for this lesson); :class:`ProtectedAccountSocket` is the same
  handler with the app's check (``auth.socket_origin_refusal``: an allowlist, and a missing
  Origin refused when cookies are sent). :func:`add_account_sockets` mounts both on a running
  QR-login server; :class:`EvilSiteApp` is "a page from another origin" that opens the socket
  from a browser; :func:`hijack` is the same attack from Python, setting ``Origin`` and
  ``Cookie`` as a browser would. :func:`same_site_in_chromium` opens the attacker's page in a
  real headless Chromium, once from another *site* (``attacker.test``) and once from the victim's
  site on another port, to show what ``SameSite=Lax`` does and does not keep off the socket.
- **QRLJacking (OWASP)** (:mod:`~lab.lessons.security.qrljacking`). :class:`PhishingApp` is the
  attacker's site: its server acts as the attacker's browser on the real site, relays the real
  site's live QR code to the victim, and redeems the ticket when the victim's phone confirms.
  :func:`confirm_page_facts` reads what the phone's confirm page tells the victim (the
  requesting browser's address and agent).
- **Limits** (:mod:`~lab.lessons.security.limits`): an oversized WebSocket message and a burst
  of calls, to see what the app refuses and how.

Everything binds port 0 and keeps its state on its application object.
"""
from __future__ import annotations

from lab.lessons.security.entropy import (expected_guess_seconds, expected_guesses, guess_time_frame, id_positions,
                                          measure_id_scheme, six_digit_id)
from lab.lessons.security.guessing import (WeakTicketApp, guess_live_ticket, guess_live_ticket_async,
                                           start_weak_ticket_server)
from lab.lessons.security.hijacking import (ACCOUNT_PATHS, ATTACKER_HOST, VICTIM_HOST, EvilSiteApp,
                                            ProtectedAccountSocket, TornadoDefaultAccountSocket, VulnerableAccountSocket,
                                            add_account_sockets, chromium_executable, hijack, hijack_async,
                                            same_site_in_chromium, start_evil_site)
from lab.lessons.security.limits import burst_of_calls, send_oversized_message, send_oversized_message_async
from lab.lessons.security.qrljacking import (ATTACKER_ADDRESS, ATTACKER_AGENT, AttackerBrowser, PhishingApp,
                                             confirm_page_facts, start_phishing_site, wait_for_victory)

__all__ = ["ATTACKER_ADDRESS", "ATTACKER_AGENT", "ACCOUNT_PATHS", "measure_id_scheme", "id_positions",
           "expected_guesses", "expected_guess_seconds", "guess_time_frame", "six_digit_id", "WeakTicketApp",
           "start_weak_ticket_server", "guess_live_ticket", "VulnerableAccountSocket", "TornadoDefaultAccountSocket",
           "ProtectedAccountSocket", "add_account_sockets", "hijack", "EvilSiteApp", "start_evil_site",
           "AttackerBrowser", "PhishingApp", "start_phishing_site", "wait_for_victory", "confirm_page_facts",
           "send_oversized_message", "burst_of_calls", "guess_live_ticket_async", "hijack_async",
           "send_oversized_message_async", "same_site_in_chromium", "chromium_executable", "VICTIM_HOST",
           "ATTACKER_HOST"]
