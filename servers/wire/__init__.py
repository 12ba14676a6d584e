"""The sans-I/O core: wire formats as pure functions, with no sockets and no event loop.

Why sans-I/O: the same few functions frame bytes for the servers, parse them in the Python
clients, are checked byte for byte by the tests, and are what a lesson shows a learner. Nothing
here reads a socket, so each piece can be fed bytes one at a time in a notebook cell.

- :mod:`servers.wire.http` - HTTP/1.1 messages: ``encode_request``, ``encode_response``, ``encode_chunk``,
  ``HttpParser`` (head, body pieces, end; Content-Length, chunked, until close), ``split_messages``.
- :mod:`servers.wire.sse` - Server-Sent Events: ``encode_event``, ``encode_comment``, ``SSEParser``.
- :mod:`servers.wire.websocket` - RFC 6455: ``accept_key``, ``frame_header``, ``parse_frame_header``.
- :mod:`servers.wire.stomp` - STOMP 1.2: ``Frame``, ``encode_frame``, ``StompParser``, heart-beats.
"""
