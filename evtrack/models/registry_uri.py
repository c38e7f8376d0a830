"""``models:/`` URIs -> where the model's files are.

``models:/m-<id>`` is a logged model (its artifact location); ``models:/<name>/<version>``
and ``models:/<name>@<alias>`` go through the registry to a version's source, which is
itself any model URI (``runs:/…``, ``models:/m-…``, a path or URL). ``models:/<name>/latest``
is the highest version. (MLflow's stages, ``models:/<name>/Production``, are deprecated
and not supported: use an alias.)
"""

from __future__ import annotations

import re
from typing import Any

from evtrack.errors import InvalidParameterValue

__all__ = ["resolve_models_uri", "source_uri"]

_LOGGED = re.compile(r"^m-[0-9a-f]{32}$")


def _client(tracking_uri: str | None):
    from evtrack.tracking.client import MlflowClient

    return MlflowClient(tracking_uri)


def source_uri(client: Any, source: str) -> str:
    """A version's source as a URI evtrack can download (models:/m-… resolved)."""
    if source.startswith("models:/") and _LOGGED.match(source[len("models:/") :].strip("/")):
        return client.get_logged_model(source[len("models:/") :].strip("/")).artifact_location
    return source


def resolve_models_uri(uri: str, tracking_uri: str | None = None) -> str:
    """The URI of the files behind a ``models:/`` URI."""
    rest = uri[len("models:") :].lstrip("/").rstrip("/")
    client = _client(tracking_uri)
    if _LOGGED.match(rest):
        return client.get_logged_model(rest).artifact_location
    if "@" in rest and "/" not in rest:
        name, alias = rest.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    elif "/" in rest:
        name, ref = rest.rsplit("/", 1)
        if ref == "latest":
            found = client.search_model_versions(f"name = '{name.replace(chr(39), chr(39) * 2)}'")
            if not found:
                raise InvalidParameterValue(f"Registered model {name!r} has no versions.")
            version = max(found, key=lambda v: int(v.version))
        elif ref.isdigit():
            version = client.get_model_version(name, ref)
        else:
            raise InvalidParameterValue(
                f"Invalid model URI {uri!r}: stages are not supported; use "
                "models:/<name>/<version> or models:/<name>@<alias>."
            )
    else:
        raise InvalidParameterValue(
            f"Invalid model URI {uri!r}: use models:/<model_id>, models:/<name>/<version> "
            "or models:/<name>@<alias>."
        )
    return source_uri(client, version.source)
