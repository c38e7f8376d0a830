"""The models page: registered models, their versions and aliases (the model registry).

The registry is events like everything else (the pseudo-experiment ``registry``, see
:mod:`evtrack.store.log.models`); the page folds them through the same SQL views as
``evtrack sql`` (``registered_models``, ``model_versions``, ``registered_model_aliases``,
…). Read-only: nothing here writes, and a store with no registry shows an empty page.
"""

from __future__ import annotations

from typing import Any

from evtrack.store.log.models import REGISTRY_SCOPE
from evtrack.web.views.base import blueprint, page, state

#: Versions listed per registered model (the newest first).
MAX_VERSIONS = 200


def registry() -> list[dict[str, Any]]:
    """Every registered model with its tags, aliases and newest versions."""
    from evtrack.store.log.views import connect, load_events, rows

    store = state().store
    if REGISTRY_SCOPE not in store.list_experiment_ids():
        return []
    con = connect(load_events(store, [REGISTRY_SCOPE], history=False))
    try:
        models = rows(
            con,
            "SELECT name, description, creation_timestamp, last_updated_timestamp "
            "FROM registered_models ORDER BY name",
        )
        tags = rows(con, "SELECT name, key, value FROM registered_model_tags ORDER BY key")
        aliases = rows(
            con, "SELECT name, alias, version FROM registered_model_aliases ORDER BY alias"
        )
        versions = rows(
            con,
            "SELECT name, version, source, run_id, model_id, status, description, "
            "creation_timestamp FROM model_versions ORDER BY name, version DESC",
        )
    finally:
        con.close()
    by_name = {m["name"]: {**m, "tags": [], "aliases": [], "versions": []} for m in models}
    for t in tags:
        if t["name"] in by_name:
            by_name[t["name"]]["tags"].append({"key": t["key"], "value": t["value"]})
    for a in aliases:
        if a["name"] in by_name:
            by_name[a["name"]]["aliases"].append({"alias": a["alias"], "version": a["version"]})
    for v in versions:
        model = by_name.get(v.pop("name"))
        if model is None:
            continue
        v["aliases"] = [a["alias"] for a in model["aliases"] if a["version"] == v["version"]]
        if len(model["versions"]) < MAX_VERSIONS:
            model["versions"].append(v)
        model["version_count"] = model.get("version_count", 0) + 1
    for model in by_name.values():
        model.setdefault("version_count", 0)
    return list(by_name.values())


@blueprint.get("/models")
def models():
    data = {"registered_models": registry(), "max_versions": MAX_VERSIONS}
    return page("models.html", data)
