"""What every request goes through before and after its route (a plain ASGI middleware):

* **Size.** A body over its limit is refused with 413 before it is read: a JSON body at the
  grid's cap (:data:`cnnbench.serve.api_models.GRID_BYTES`), a multipart upload at
  ``--max-upload`` plus the grid's cap; by its Content-Length, and by counting when there is
  none (a chunked body).
* **The token.** :func:`authorized` compares it as bytes, in constant time: a header with a
  non-ASCII byte is a 401 like any wrong token. With ``private`` (``serve --private``), every
  read needs it too, except ``/api/health``.
* **No server paths** for a request without the token: absolute paths in what it gets back
  (an upload's stored path, the artifacts folder, a manifest's source, a message) are cut to
  ``…/name``.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cnnbench.serve.api_models import GRID_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: the roots of absolute paths on a server (and ones given at start: the data folder, ...)
_ROOTS = ("home", "root", "tmp", "var", "srv", "opt", "usr", "mnt", "media", "data", "work",
          "etc", "proc", "sys", "dev", "run", "nix", "Users", "private", "scratch", "lib",
          "workspace", "gpfs", "lustre")  # fmt: skip
_PATH_CHARS = r"[^\s\"'<>,;)\]}|]"
_PUBLIC = ("/api/health",)


def authorized(headers: dict[str, str], token: str | None) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (True without a token)."""
    if token is None:
        return True
    given = headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    # headers arrive as latin-1 text: their bytes again, compared as bytes (a str with a
    # non-ASCII character made compare_digest raise, a 500)
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode("latin-1", "replace"), token.encode("utf-8")
    )


def path_pattern(extra_roots: list[str]) -> re.Pattern[str]:
    """Absolute paths under a server root (or under one of ``extra_roots``)."""
    roots = "|".join(re.escape(r.strip("/")) for r in [*_ROOTS, *extra_roots] if r.strip("/"))
    return re.compile(rf"(?<![\w.:/~-])/(?:{roots})(?:/{_PATH_CHARS}*)*")


def scrub(text: str, pattern: re.Pattern[str]) -> str:
    """``text`` with each absolute server path cut to ``…/`` and its last part."""
    return pattern.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


class Guard:
    """The middleware: size limits, the token for reads (``private``), no paths without it."""

    def __init__(self, app: ASGIApp, *, token: str | None, private: bool, max_upload: int,
                 roots: list[str]) -> None:  # fmt: skip
        self.app, self.token, self.private = app, token, private
        self.max_upload = max_upload
        self.pattern = path_pattern(roots)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        ok = authorized(headers, self.token)
        if self.private and not ok and scope["path"] not in _PUBLIC:
            await _error(send, 401, "this service needs Authorization: Bearer <CNNBENCH_TOKEN>")
            return
        multipart = headers.get("content-type", "").startswith("multipart/form-data")
        limit = self.max_upload + GRID_BYTES if multipart else GRID_BYTES
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _error(send, 413, f"the body is larger than the limit of {limit} bytes")
            return
        receive = _Counted(receive, limit)
        # shown paths only to who holds a configured token (a HEAD's length is the GET's)
        if (self.token is None or not ok) and scope["method"] != "HEAD":
            send = _Scrubbed(send, self.pattern)
        try:
            await self.app(scope, receive, send)
        except BodyTooLarge:
            await _error(send, 413, f"the body is larger than the limit of {limit} bytes")


class BodyTooLarge(Exception):
    """A body (without a Content-Length, or lying about it) went past its limit."""


class _Counted:
    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive, self.limit, self.seen = receive, limit, 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise BodyTooLarge()
        return message


class _Scrubbed:
    """Holds a text response back whole, cuts the server paths out of it, then sends it."""

    def __init__(self, send: Send, pattern: re.Pattern[str]) -> None:
        self.send, self.pattern = send, pattern
        self.start: Message | None = None
        self.body: list[bytes] = []
        self.text = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            ctype = dict(message.get("headers", [])).get(b"content-type", b"").decode("latin-1")
            self.text = ctype.startswith(("application/json", "text/"))
            if not self.text:
                await self.send(message)
                return
            self.start = message
            return
        if message["type"] != "http.response.body" or not self.text:
            await self.send(message)
            return
        self.body.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = scrub(b"".join(self.body).decode("utf-8", "replace"), self.pattern).encode()
        assert self.start is not None
        headers = [(k, v) for k, v in self.start.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
