"""The scoring server: a plain ASGI application (no framework) served by uvicorn.

Routes: ``GET /ping`` ``/health`` ``/version`` ``/metrics``, ``POST /invocations``,
and the Open Inference Protocol's ``GET /v2``, ``/v2/health/live|ready``,
``/v2/models/<name>[/ready]``, ``POST /v2/models/<name>/infer``.

Every error is ``{"error_code", "message"}`` with a 4xx status: bad JSON, a body over
``max_body_bytes`` (413), a missing or unknown Content-Type (415), an input that does
not match the signature (400), a model that raises on the input (400, its message
without the traceback), a call longer than ``timeout`` (503). A bug in evtrack
itself answers 500 with a generic message; the traceback goes to the server's stderr
only. A timed-out model call cannot be interrupted (Python threads cannot be killed):
its thread finishes in the background while the client already has its 503.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from evtrack.errors import BadRequest, EvtrackError, InvalidParameterValue
from evtrack.models import payload
from evtrack.models.scoring import kserve
from evtrack.models.scoring.batching import Batcher
from evtrack.models.scoring.metrics import ScoringMetrics

__all__ = ["ScoringApp"]

_JSON = b"application/json"


class HttpError(EvtrackError):
    def __init__(self, status: int, message: str, error_code: str = "BAD_REQUEST") -> None:
        super().__init__(message, error_code)
        self.http_status = status


class ScoringApp:
    """ASGI app serving one :class:`~evtrack.models.pyfunc.PyFuncModel`."""

    def __init__(
        self,
        model: Any,
        *,
        name: str = "model",
        timeout: float = 60.0,
        max_body_bytes: int = 64 * 1024 * 1024,
        batch_max_size: int = 0,
        batch_max_ms: float = 0.0,
        threads: int = 4,
        multiprocess_metrics: bool = False,
    ) -> None:
        from evtrack import __version__

        self.model = model
        self.name = name
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.version = __version__
        self.metrics = ScoringMetrics(multiprocess_metrics)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="evtrack-score")
        self._batcher = (
            Batcher(
                model.predict_prepared,
                self._run,
                batch_max_size,
                batch_max_ms,
                on_batch=self._observe_batch,
            )
            if batch_max_size > 1
            else None
        )
        self._schema = model.metadata.get_input_schema()

    # -- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        route = _route_label(scope["path"])
        try:
            _, status, body, ctype = await self._dispatch(scope, receive)
        except EvtrackError as exc:
            status, ctype = exc.http_status, _JSON
            body = json.dumps({"error_code": exc.error_code, "message": exc.message}).encode()
        except Exception:  # a bug in evtrack: no traceback to the client
            traceback.print_exc(file=sys.stderr)
            status, ctype = 500, _JSON
            body = b'{"error_code": "INTERNAL_ERROR", "message": "Internal error in the scoring server; see its log."}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.metrics.observe(route, status, time.perf_counter() - started)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._batcher is not None:
                    self._batcher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._batcher is not None:
                    await self._batcher.stop()
                self._pool.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _body(self, scope: dict, receive: Any) -> bytes:
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                raise self._too_large()
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _too_large(self) -> HttpError:
        return HttpError(
            413,
            f"The request body is larger than {self.max_body_bytes} bytes; split it into "
            "smaller requests or start the server with a larger --max-body-size.",
        )

    # -- routing -------------------------------------------------------------------

    async def _dispatch(self, scope: dict, receive: Any) -> tuple[str, int, bytes, bytes]:
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        if path == "/invocations":
            self._method(method, "POST")
            return "/invocations", 200, await self._invocations(scope, receive), _JSON
        if path in ("/ping", "/health"):
            self._method(method, "GET")
            return path, 200, b"\n", b"text/plain"
        if path == "/version":
            self._method(method, "GET")
            return path, 200, self.version.encode(), b"text/plain"
        if path == "/metrics":
            self._method(method, "GET")
            body, ctype = self.metrics.render()
            return path, 200, body, ctype.encode()
        if path == "/v2" or path.startswith("/v2/"):
            return await self._v2(method, path, scope, receive)
        raise HttpError(
            404,
            f"No route {path}: use POST /invocations, GET /ping, /health, /version, /metrics "
            "or the V2 routes under /v2.",
            "ENDPOINT_NOT_FOUND",
        )

    @staticmethod
    def _method(method: str, allowed: str) -> None:
        if method != allowed and not (allowed == "GET" and method == "HEAD"):
            raise HttpError(405, f"Method {method} is not allowed here; use {allowed}.")

    def _content(self, scope: dict) -> tuple[str, dict[str, str]]:
        header = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                header = value.decode("latin-1")
                break
        return payload.parse_media_type(header)

    async def _invocations(self, scope: dict, receive: Any) -> bytes:
        media, params_of_type = self._content(scope)
        if media not in ("application/json", "text/csv"):
            got = f"Content-Type {media!r}" if media else "no Content-Type"
            raise HttpError(
                415,
                f"The request has {got}. Send 'application/json' (dataframe_split, "
                "dataframe_records, instances or inputs; or format=pandas-split / "
                "pandas-records) or 'text/csv'.",
            )
        body = await self._body(scope, receive)
        if media == "text/csv":
            data, params = payload.parse_csv(body), None
        else:
            data, params = payload.parse_json(body, params_of_type, self._schema)
        data, params = self.model.prepare(data, params)
        pred = await self._predict(data, params)
        return payload.encode_predictions(pred)

    async def _predict(self, data: Any, params: dict | None) -> Any:
        if self._batcher is not None and params is None and hasattr(data, "columns"):
            return await self._batcher.submit(data)
        if params is None:
            self._observe_batch(_rows(data), 1)
        return await self._run(self.model.predict_prepared, data, params)

    def _observe_batch(self, rows: int, requests: int) -> None:
        self.metrics.batch_rows.observe(rows)
        self.metrics.batch_requests.observe(requests)

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._pool, _call_model, fn, args), self.timeout
            )
        except asyncio.TimeoutError:
            raise HttpError(
                503,
                f"The model took longer than {self.timeout:g} s (--timeout); send fewer rows "
                "per request or raise the timeout.",
                "TEMPORARILY_UNAVAILABLE",
            ) from None

    # -- Open Inference Protocol (KServe V2) ---------------------------------------

    async def _v2(self, method: str, path: str, scope: dict, receive: Any):
        parts = path.split("/")[2:]
        if parts == []:
            self._method(method, "GET")
            info = {"name": "evtrack", "version": self.version, "extensions": []}
            return "/v2", 200, json.dumps(info).encode(), _JSON
        if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
            self._method(method, "GET")
            return path, 200, json.dumps({parts[1]: True}).encode(), _JSON
        if parts[0] == "models" and len(parts) >= 2:
            name, rest = parts[1], parts[2:]
            if name != self.name:
                raise HttpError(
                    404,
                    f"No model {name!r} here; this server serves {self.name!r}.",
                    "RESOURCE_DOES_NOT_EXIST",
                )
            if rest == [] or (len(rest) == 2 and rest[0] == "versions"):
                self._method(method, "GET")
                meta = kserve.metadata(self.name, self.model.metadata.signature)
                return "/v2/models/<name>", 200, json.dumps(meta).encode(), _JSON
            if rest == ["ready"]:
                self._method(method, "GET")
                return "/v2/models/<name>/ready", 200, b'{"ready": true}', _JSON
            if rest == ["infer"]:
                self._method(method, "POST")
                return "/v2/models/<name>/infer", 200, await self._infer(scope, receive), _JSON
        raise HttpError(404, f"No V2 route {path}.", "ENDPOINT_NOT_FOUND")

    async def _infer(self, scope: dict, receive: Any) -> bytes:
        media, _ = self._content(scope)
        if media != "application/json":
            for key, _value in scope["headers"]:
                if key == b"inference-header-content-length":
                    raise HttpError(
                        415, "The binary tensor extension is not supported; send JSON tensors."
                    )
            if media:
                raise HttpError(
                    415, f"V2 requests are JSON; the request has Content-Type {media!r}."
                )
        body = payload.loads(await self._body(scope, receive))
        data, params = kserve.to_model_input(body, self._schema)
        data, params = self.model.prepare(data, params)
        pred = await self._predict(data, params)
        response = kserve.to_response(self.name, pred, body.get("id"))
        return json.dumps(response).encode()


_FIXED_ROUTES = {"/invocations", "/ping", "/health", "/version", "/metrics", "/v2"}


def _route_label(path: str) -> str:
    """A bounded set of metric labels: unknown paths must not create new series."""
    path = path.rstrip("/") or "/"
    if path in _FIXED_ROUTES:
        return path
    parts = path.split("/")
    if path.startswith("/v2/health/"):
        return "/v2/health"
    if path.startswith("/v2/models/") and len(parts) > 3:
        return "/v2/models/<name>" + ("/" + parts[4] if len(parts) > 4 else "")
    return "other"


def _rows(data: Any) -> int:
    try:
        return len(data)
    except TypeError:
        return 1


def _call_model(fn: Any, args: tuple) -> Any:
    """Run the model; its own exceptions become 400s that quote them, no traceback."""
    try:
        return fn(*args)
    except EvtrackError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise BadRequest(
            f"The model could not score this input: {type(exc).__name__}: {exc}. "
            "Check that the input matches the data the model was trained on."
        ) from None
    except MemoryError:
        raise InvalidParameterValue(
            "The model ran out of memory on this input; send fewer rows per request."
        ) from None
