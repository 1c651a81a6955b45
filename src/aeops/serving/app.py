"""MLflow's scoring server app with bounds on what one request can make it read and parse.

`aeops serve` runs this module's `app` under uvicorn, as `mlflow models serve --env-manager local`
runs MLflow's: the routes, parsing, schema enforcement and errors are MLflow's own. In front of them,
a POST body is read up to MAX_BODY_BYTES (413 beyond: MLflow reads any body whole into memory) and
a JSON body nested deeper than MAX_JSON_DEPTH is refused with a 400 (MLflow's parser answers a
500 for a RecursionError). Both answers are MLflow's error JSON with one line in `message`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

MAX_BODY_BYTES = 64 << 20  # about 100,000 rows of 64 features as JSON
MAX_JSON_DEPTH = 64  # a `dataframe_split` body is 3 deep, `inputs` tensors a few more
_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the character it escapes
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]], _STEP[[ord("]"), ord("}")]] = 1, -1
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
ASGI = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def json_depth(body: bytes) -> int:
    """How deep brackets nest in `body`, strings left out. Linear in the body, in C but for the sum: escapes
    are dropped, the text between quotes (the strings) is cut out, only the brackets are kept
    (bytes.translate), and numpy sums their running depth 4 M at a time. A 340 KB request: under 1 ms."""
    opening = body.count(b"[") + body.count(b"{")
    if opening <= MAX_JSON_DEPTH:
        return opening  # it cannot nest deeper than it opens: no need to look
    outside = b"".join(_ESCAPE.sub(b"", body).split(b'"')[::2])  # even pieces lie outside strings
    brackets = np.frombuffer(outside.translate(None, _NOT_BRACKETS), np.uint8)
    depth, deepest = 0, 0
    for start in range(0, len(brackets), 1 << 22):
        levels = depth + np.cumsum(_STEP[brackets[start:start + (1 << 22)]], dtype=np.int64)
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


async def _refuse(send: Callable[[dict], Awaitable[None]], status: int, message: str) -> None:
    body = json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def guarded(inner: ASGI) -> ASGI:
    """`inner` behind the body-size and nesting bounds (POST requests only; /ping and /health pass)."""

    async def app(scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await inner(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        too_big = f"request body over {MAX_BODY_BYTES:,} bytes; send fewer rows per request (or use `aeops score`)"
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return await _refuse(send, 413, too_big)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_BODY_BYTES:
                return await _refuse(send, 413, too_big)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
        # MLflow parses everything but CSV as JSON; the scan runs in a thread so /ping answers meanwhile
        depth = 0 if content_type.startswith(b"text/csv") else await asyncio.to_thread(json_depth, body)
        if depth > MAX_JSON_DEPTH:
            return await _refuse(send, 400, f"JSON nested {depth} levels deep, at most {MAX_JSON_DEPTH}; send "
                                            "{\"dataframe_split\": {\"columns\": [...], \"data\": [[...]]}}")
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await inner(scope, replay, send)

    return app


def _build() -> ASGI:
    from mlflow.pyfunc.scoring_server.app import app as mlflow_app  # loads the model named in the environment

    return guarded(mlflow_app)


def __getattr__(name: str) -> Any:  # `uvicorn aeops.serving.app:app` builds it; importing the module does not
    if name == "app":
        globals()["app"] = _build()
        return globals()["app"]
    raise AttributeError(name)
