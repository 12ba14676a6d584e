"""How hard each technique is to use, measured: lines of code per technique, counted from the source.

Lesson 06's "easy / normal / hard" row is only as good as what it rests on. What a learner writes
for a browser is the page's script, so :func:`browser_table` counts the lines of each feed page's
script (``servers/feed/pages/``; blank lines and ``//`` comments left out, :func:`script_lines`):
``EventSource`` and ``WebSocket`` come with the browser, a STOMP client does not (ours is
``stomp.js``, counted apart as the library a page needs). :func:`ease_table` counts the server and
the Python client code each technique needs from our package (:data:`EASE_PARTS`), leaving out
blank lines, comments and docstrings (:func:`code_lines`): that is the cost of *building* the
technique, which a framework usually pays for you.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import io
import re
import tokenize
from pathlib import Path
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


PAGES = Path(__file__).resolve().parents[3] / "servers" / "feed" / "pages"

#: The page a browser opens per technique, the browser API it rests on and the script library it
#: loads beyond the page's own script (the shared ``feed.js``, which only draws the list, is not counted).
BROWSER_PAGES: dict[str, dict[str, Any]] = {
    "poll": {"page": "poll.html", "api": "fetch + setTimeout", "library": None},
    "longpoll": {"page": "longpoll.html", "api": "fetch in a loop", "library": None},
    "sse": {"page": "sse.html", "api": "EventSource (built in)", "library": None},
    "ws": {"page": "ws.html", "api": "WebSocket (built in)", "library": None},
    "stomp": {"page": "stomp.html", "api": "WebSocket + a STOMP client", "library": "stomp.js"},
}

_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def page_script(page: str) -> str:
    """The inline script of a feed page (everything between ``<script>`` and ``</script>``), or a
    whole ``.js`` file, as the browser runs it."""
    text = (PAGES / page).read_text(encoding="utf-8")
    if page.endswith(".js"):
        return text
    return "\n".join(block.strip("\n") for block in _SCRIPT.findall(text)) + "\n"


def script_lines(source: str) -> int:
    """Lines of JavaScript that are neither blank nor only a ``//`` comment (region markers included)."""
    count, in_block = 0, False
    for line in source.splitlines():
        text = line.strip()
        if in_block:
            in_block = "*/" not in text
            continue
        if text.startswith("/*"):
            in_block = "*/" not in text
            continue
        if text and not text.startswith("//"):
            count += 1
    return count


_REGION = re.compile(r"^\s*//\s*region:\s*([\w.-]+)\s*$", re.M)


def page_regions(page: str) -> list[str]:
    """The names of the ``// region: NAME`` blocks a page marks (the lines a lesson shows)."""
    return _REGION.findall((PAGES / page).read_text(encoding="utf-8"))


def technique_lines(page: str) -> tuple[int, str]:
    """``(lines, what was counted)``: the lines of the page's marked regions (the technique itself,
    without the page's test hooks and status text) if it marks any, else of its whole script."""
    from lab.code import script_text

    regions = page_regions(page)
    if not regions:
        return script_lines(page_script(page)), "whole script"
    return (sum(script_lines(script_text(page, name)[1]) for name in regions),
            "regions " + ", ".join(regions))


def browser_table() -> pd.DataFrame:
    """Per technique: the page, the browser API, the lines of the technique in the page's script
    (:func:`technique_lines`), the whole script, and the library it loads (0 if none), counted now
    from ``servers/feed/pages``."""
    rows = []
    for technique, spec in BROWSER_PAGES.items():
        library = spec["library"]
        lines, counted = technique_lines(spec["page"])
        rows.append({"technique": technique, "page": spec["page"], "browser_api": spec["api"],
                     "technique_lines": lines, "counted": counted,
                     "whole_script_lines": script_lines(page_script(spec["page"])),
                     "library": library or "", "library_lines": script_lines(page_script(library)) if library else 0})
    return pd.DataFrame(rows)
