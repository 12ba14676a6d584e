"""How hard each technique is to use, measured: lines of our own server and client code per technique.

Lesson 06's "easy / normal / hard" row is only as good as what it rests on, so
:func:`ease_table` counts, from the source as it is now, the lines each technique needs from
our code (:data:`EASE_PARTS`), leaving out blank lines, comments and docstrings
(:func:`code_lines`).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import io
import tokenize
from typing import Any

import pandas as pd


#: What each technique needs from our code, server side and client side ("module" or "module:Name").
#: Shared by all five and not counted: the event buffer, publish, the JSON error base, Tornado.
EASE_PARTS: dict[str, dict[str, list[str]]] = {
    "poll": {"server": ["servers.feed.polling:PollHandler", "servers.feed.polling:NoCacheMixin",
                        "servers.feed.polling:events_body"],
             "client": ["servers.clients.http:poll", "servers.clients.http:iter_poll", "servers.clients.http:_follow"]},
    "longpoll": {"server": ["servers.feed.longpoll:LongPollHandler", "servers.feed.polling:NoCacheMixin",
                            "servers.feed.polling:events_body", "servers.feed.app:FeedApp.wait_for_event"],
                 "client": ["servers.clients.http:longpoll", "servers.clients.http:iter_longpoll",
                            "servers.clients.http:_follow"]},
    "sse": {"server": ["servers.feed.sse", "servers.outbox", "servers.wire.sse:encode_event",
                       "servers.wire.sse:encode_comment", "servers.wire.sse:_split_lines"],
            "client": ["servers.clients.sse:SSEStream", "servers.clients.sse:sse_message",
                       "servers.wire.sse:SSEParser", "servers.wire.sse:SSEEvent"]},
    "ws": {"server": ["servers.feed.ws", "servers.outbox"],
           "client": ["servers.clients.ws"]},
    "stomp": {"server": ["servers.feed.stomp", "servers.feed.stomp_session", "servers.outbox",
                         "servers.wire.stomp"],
              "client": ["servers.clients.stomp", "servers.wire.stomp"]},
}


def _resolve(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def code_lines(obj: Any) -> int:
    """Lines of code of a module, class or function: blank lines, comments and docstrings left out."""
    source = inspect.getsource(_resolve(obj) if isinstance(obj, str) else obj)
    source = inspect.cleandoc("\n" + source) if source[:1].isspace() else source
    docstring_lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            docstring_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    code: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            code.update(range(token.start[0], token.end[0] + 1))
    return len(code - docstring_lines)


def ease_table(parts: dict[str, dict[str, list[str]]] | None = None) -> pd.DataFrame:
    """Lines of our server and client code per technique (counted now, from the source)."""
    rows = []
    for technique, sides in (parts or EASE_PARTS).items():
        server = sum(code_lines(s) for s in sides["server"])
        client = sum(code_lines(s) for s in sides["client"])
        rows.append({"technique": technique, "server_lines": server, "client_lines": client,
                     "total_lines": server + client})
    return pd.DataFrame(rows)
