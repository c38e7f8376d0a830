"""Reading a request: size limits, JSON bodies and query strings, as MLflow's server does."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from flask import current_app, request

from evtrack.errors import InvalidParameterValue
from evtrack.server.backend import Backend
from evtrack.server.protocol import ParseSpec, parse, query_args
from evtrack.tracking import validation

__all__ = ["backend", "body_bytes", "config", "json_body", "message"]


def backend() -> Backend:
    return current_app.extensions["evtrack"]


def config(name: str) -> Any:
    return current_app.config[name]


def body_bytes(limit: int) -> bytes:
    """The raw body, refused with MLflow's error when longer than ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(length, limit)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(None, limit)
    return data


def too_large(size: int | None, limit: int) -> InvalidParameterValue:
    got = f"got a request of size {size}" if size is not None else "got a larger request"
    return InvalidParameterValue(f"Requests must be at most {limit} bytes, {got}.")


#: A JSON escape of a UTF-16 surrogate; only bodies holding one need the full scan.
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def json_body(check_size: Callable[[int], None] | None = None) -> Any:
    """The JSON body of a POST/PUT/PATCH request ({} when empty).

    ``check_size(n_bytes)`` may refuse a body by its size (called before reading when the
    length is announced, and on what was read). Malformed JSON, JSON nested too deep for
    the parser, and strings holding lone UTF-16 surrogates are INVALID_PARAMETER_VALUE,
    before anything is written.
    """
    content_type = request.content_type
    if content_type is None and request.content_length:
        raise InvalidParameterValue("Bad Request. Content-Type header is missing.")
    if content_type is not None and content_type.split(";")[0].strip() != "application/json":
        raise InvalidParameterValue(
            "Bad Request. Content-Type must be one of ['application/json']."
        )
    if check_size is not None and request.content_length is not None:
        check_size(request.content_length)
    data = body_bytes(config("EVTRACK_MAX_JSON_BYTES"))
    if check_size is not None:
        check_size(len(data))
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
        if isinstance(body, str):  # old clients double-encode their JSON, as MLflow notes
            body = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameterValue(f"Malformed JSON in request body: {exc}") from None
    except RecursionError:
        raise InvalidParameterValue(
            "Malformed JSON in request body: it is nested too deeply to parse. MLflow's "
            "requests nest a few levels; send a flat object."
        ) from None
    if _SURROGATE_ESCAPE.search(data):
        validation.check_unicode(body)
    return body


def message(spec: ParseSpec, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request's fields per ``spec``: from the query string for GET, else the body."""
    if request.method == "GET":
        data = query_args(request.args, spec)
    else:
        data = json_body()
    return parse(data, spec, required)
