"""The feed server (lessons 00-06): one event stream, served by every push technique.

``start_feed()`` runs it in-process; ``python -m servers feed --port 0`` runs it from a shell.
One module per technique: :mod:`.polling` (publish, short polling), :mod:`.longpoll`,
:mod:`.sse`, :mod:`.ws`, :mod:`.stomp` + :mod:`.stomp_session`; the state they share lives on
:class:`~servers.feed.app.FeedApp`.
"""
from servers.feed.app import FeedApp, make_feed_app, start_feed

__all__ = ["FeedApp", "make_feed_app", "start_feed"]
