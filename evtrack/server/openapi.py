"""The OpenAPI 3.0 document of evtrack's own API, served at ``/api/evtrack/openapi.json``.

MLflow's REST API is documented by MLflow itself; this covers the routes evtrack adds.
"""

from __future__ import annotations

from typing import Any

__all__ = ["document"]

_ERROR = {
    "description": "An error, MLflow-style",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error_code", "message"],
                "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
            }
        }
    },
}

_NUMBER_OR_SPECIAL = {
    "oneOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ERROR for c in codes}


def document() -> dict[str, Any]:
    from evtrack import __version__

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "evtrack server: native API",
            "version": __version__,
            "description": "evtrack's own endpoints. MLflow's REST API is served under "
            "/api/2.0/mlflow/ and /api/2.0/mlflow-artifacts/ as documented by MLflow.",
        },
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/version": {
                "get": {
                    "summary": "evtrack version",
                    "responses": {
                        "200": {
                            "description": "version",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/api/evtrack/ingest": {
                "post": {
                    "summary": "Bulk ingest metric series, params and tags of one run",
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "type": "object",
                                "required": ["run_id"],
                                "additionalProperties": False,
                                "properties": {
                                    "run_id": {"type": "string"},
                                    "metrics": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["key", "values"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "key": {"type": "string"},
                                                "values": {
                                                    "type": "array",
                                                    "items": _NUMBER_OR_SPECIAL,
                                                },
                                                "steps": {
                                                    "type": "array",
                                                    "items": {"type": "integer"},
                                                },
                                                "timestamps": {
                                                    "type": "array",
                                                    "items": {"type": "integer", "minimum": 0},
                                                },
                                            },
                                        },
                                    },
                                    "params": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "tags": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "Durable",
                            **_json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "metrics": {"type": "integer"},
                                        "params": {"type": "integer"},
                                        "tags": {"type": "integer"},
                                    },
                                }
                            ),
                        },
                        **_errors(400, 401, 403, 404),
                    },
                }
            },
            "/api/evtrack/sql": {
                "post": {
                    "summary": "Read-only DuckDB SQL over the views (no file or network access); "
                    "memory, concurrency (429 when busy) and answer size are capped",
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "type": "object",
                                "required": ["query"],
                                "additionalProperties": False,
                                "properties": {
                                    "query": {"type": "string"},
                                    "params": {"type": "array"},
                                    "max_rows": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "maximum": 100000,
                                    },
                                },
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "Rows",
                            **_json(
                                {
                                    "type": "object",
                                    "required": ["columns", "rows", "truncated"],
                                    "properties": {
                                        "columns": {"type": "array", "items": {"type": "string"}},
                                        "rows": {"type": "array", "items": {"type": "array"}},
                                        "truncated": {"type": "boolean"},
                                    },
                                }
                            ),
                        },
                        **_errors(400, 401, 429),
                    },
                }
            },
            "/api/evtrack/metrics/series": {
                "get": {
                    "summary": "One metric's history, downsampled with min/max per step bucket",
                    "parameters": [
                        {
                            "name": "run_id",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "key",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "max_points",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 2, "maximum": 100000},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "Points (NaN and infinities as strings)",
                            **_json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "run_id": {"type": "string"},
                                        "key": {"type": "string"},
                                        "total": {"type": "integer"},
                                        "method": {"type": "string"},
                                        "step": {"type": "array", "items": {"type": "integer"}},
                                        "timestamp": {
                                            "type": "array",
                                            "items": {"type": "integer"},
                                        },
                                        "value": {"type": "array", "items": _NUMBER_OR_SPECIAL},
                                    },
                                }
                            ),
                        },
                        **_errors(400, 404),
                    },
                }
            },
            "/api/evtrack/segments/{experiment_id}/{name}": {
                "put": {
                    "summary": "Store one segment built by a remote writer (idempotent)",
                    "parameters": [
                        {
                            "name": "experiment_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Stored, or already stored",
                            **_json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "segment": {"type": "string"},
                                        "events": {"type": "integer"},
                                        "created": {"type": "boolean"},
                                    },
                                }
                            ),
                        },
                        **_errors(400, 401, 403, 404),
                    },
                }
            },
        },
    }
