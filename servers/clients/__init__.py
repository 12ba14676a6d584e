"""Python clients for the servers: sync ones for notebook cells, async ones for measuring many.

Every event a client receives gets ``received_at = time.time()`` on arrival, so
``received_at - sent_at`` is the push latency (both clocks are this machine's).
See :mod:`servers.clients.feed` for the feed server's clients.
"""
