"""What every handler of every server shares: ``X-Served-By``, JSON errors, JSON bodies.

The contract every client relies on: every response carries ``X-Served-By: <server name>``, and every error
is JSON ``{"error": "<code>", "detail": "<human sentence>"}`` with a 4xx status, never Tornado's
HTML traceback page.
"""
from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import tornado.web
import tornado.websocket


class ApiError(tornado.web.HTTPError):
    """An error with a machine-readable code and a sentence for a human.

    ``raise ApiError(404, "unknown_ticket", "No ticket with id 'abc' exists.")``
    """

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(status)
        self.code = code
        self.detail = detail
        self.extra = extra


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


#: Deeper JSON is refused: the encoder and decoder recurse, and about 1,000 levels overflow the stack.
MAX_JSON_DEPTH = 100


def loads_json(raw: bytes | str) -> Any:
    """``json.loads`` for untrusted input: ``ValueError`` for what must not enter the server.

    Refused: ``NaN``/``Infinity`` and numbers too big for a float (Python would accept and later
    emit them, and then every browser's ``JSON.parse`` fails on the stream), and nesting deeper
    than :data:`MAX_JSON_DEPTH` (which would otherwise end in a ``RecursionError``, a 500).
    """
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"it is nested more than {MAX_JSON_DEPTH} levels deep") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"it is nested more than {MAX_JSON_DEPTH} levels deep")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]}... is too large for a double")
    return value


class ServedByMixin:
    """Adds ``X-Served-By`` to every response, the 101 of a WebSocket upgrade included."""

    def set_default_headers(self) -> None:  # type: ignore[override]
        self.set_header("X-Served-By", getattr(self.application, "name", "server"))  # type: ignore[attr-defined]


class BaseHandler(ServedByMixin, tornado.web.RequestHandler):
    """Base of every HTTP handler: JSON in, JSON out, JSON errors."""

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(obj, separators=(",", ":")))

    def json_body(self, required: tuple[str, ...] = ()) -> dict[str, Any]:
        """The request body as a JSON object, or a 400 that says what is wrong with it."""
        try:
            body = loads_json(self.request.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_json", f"The request body is not valid JSON: {exc}.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_json", "The request body must be a JSON object, e.g. {\"data\": 1}.")
        missing = [key for key in required if key not in body]
        if missing:
            raise ApiError(400, "missing_field", f"The JSON body lacks the field(s): {', '.join(missing)}.")
        return body

    def int_argument(self, name: str, default: int | None = None, minimum: int | None = None) -> int | None:
        raw = self.get_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, "bad_argument", f"Query argument {name!r} must be an integer, not {raw!r}.") from None
        if minimum is not None and value < minimum:
            raise ApiError(400, "bad_argument", f"Query argument {name!r} must be at least {minimum}.")
        return value

    def float_argument(self, name: str, default: float | None = None, minimum: float = 0.0,
                       maximum: float | None = None) -> float | None:
        raw = self.get_argument(name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ApiError(400, "bad_argument", f"Query argument {name!r} must be a number, not {raw!r}.") from None
        if not (value >= minimum) or (maximum is not None and value > maximum):
            bound = f" and at most {maximum}" if maximum is not None else ""
            raise ApiError(400, "bad_argument", f"Query argument {name!r} must be at least {minimum}{bound}.")
        return value

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            body = error_body(exc.code, exc.detail, **exc.extra)
        elif isinstance(exc, tornado.web.MissingArgumentError):
            body = error_body("missing_argument", f"The query argument {exc.arg_name!r} is required.")
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message and status_code < 500:
            body = error_body(_code_for(status_code), exc.log_message % exc.args if exc.args else exc.log_message)
        else:
            body = error_body(_code_for(status_code), _detail_for(status_code))
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body, separators=(",", ":")))


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _detail_for(status: int) -> str:
    if status == 404:
        return "No such route on this server."
    if status == 405:
        return "This route does not accept that HTTP method."
    if status >= 500:
        return "The server failed while handling this request; it is logged on the server."
    try:
        return HTTPStatus(status).description or HTTPStatus(status).phrase
    except ValueError:
        return "Request refused."


class NotFoundHandler(BaseHandler):
    """Unknown routes: a JSON 404 instead of Tornado's HTML page."""

    def prepare(self) -> None:
        raise ApiError(404, "not_found", f"No route {self.request.path!r} on this server.")


class _TextCheckingProtocol(tornado.websocket.WebSocketProtocol13):
    """Tornado's protocol, except that a text message that is not UTF-8 is answered with a 1007
    close (RFC 6455 §5.6 and §8.1: "fail the WebSocket connection", code 1007 "inconsistent data"),
    where Tornado drops the TCP connection with no close frame (the client sees 1006 and no reason).

    Only uncompressed messages are checked here (no handler of ours negotiates permessage-deflate;
    a compressed one is decoded by Tornado after inflating, as before). The valid ones are decoded
    again by Tornado: UTF-8 validation runs in C at memory speed, cheaper than copying its code.
    ``_handle_message`` and ``_frame_compressed`` are private: tests/test_tornado_private_api.py checks them.
    """

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        if opcode == 0x1 and not self._frame_compressed and not self.client_terminated:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self.handler.refuse_invalid_text()  # type: ignore[attr-defined]
                return None
        return super()._handle_message(opcode, data)


class BaseWebSocketHandler(ServedByMixin, tornado.websocket.WebSocketHandler):
    """Base of every WebSocket handler: ``X-Served-By`` on the 101 and JSON errors before it, and
    a 1007 close (not a dropped connection) for a text message that is not UTF-8."""

    write_error = BaseHandler.write_error

    def get_websocket_protocol(self) -> Any:
        protocol = super().get_websocket_protocol()
        if type(protocol) is tornado.websocket.WebSocketProtocol13:
            protocol.__class__ = _TextCheckingProtocol  # the same object, one method more (no state of its own)
        return protocol

    def refuse_invalid_text(self) -> None:
        """A text message was not UTF-8: close with 1007 (a STOMP session sends an ERROR first)."""
        self.close(1007, "a text message must be valid UTF-8 (RFC 6455); send other bytes in a binary message")

    # Tornado refuses a bad upgrade itself with a plain-text body (403 "Cross origin websockets
    # not allowed", 400 not an upgrade, 426 wrong version); the contract wants JSON errors.
    _UPGRADE_ERRORS = {400: "not_a_websocket_upgrade", 403: "origin_not_allowed", 426: "unsupported_websocket_version"}

    def finish(self, chunk: Any = None):  # type: ignore[override]
        status = self.get_status()
        # A string from write_error is already our JSON error body: only Tornado's own plain-text
        # refusals are wrapped (wrapping ours again hid its code, e.g. unknown_ticket).
        if isinstance(chunk, str) and status >= 400 and not chunk.startswith('{"error":'):
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            code = self._UPGRADE_ERRORS.get(status, _code_for(status))
            chunk = json.dumps(error_body(code, chunk), separators=(",", ":"))
        return super().finish(chunk)
