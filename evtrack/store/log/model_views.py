"""SQL views of logged models and the model registry, folded from their events.

Events (see :mod:`evtrack.store.log.models`): ``kind`` is ``logged_model``,
``registered_model`` or ``model_version``; ``key`` is a JSON array naming the fact
(``["m-…", "status"]``, ``["m-…", "tag", "k"]``, ``[rm_id, "alias", "champion"]``,
``[rm_id, "3", "description"]``…); ``text`` is the value, NULL when removed. The fold
is the one of every other attribute: the latest ``(time, seq, writer)`` wins
(params of logged models: the first). A metric point linked to a logged model is one
fact whose key names the whole point, ``["m-…", "metric", key, step, timestamp,
run_id, dataset_name, dataset_digest]`` (missing parts ``""``), its value in ``text``;
so re-logging one point is idempotent and no new column is needed. The views::

    logged_models          model_id, experiment_id, name, status, status_message,
                           model_type, source_run_id, artifact_location,
                           creation_timestamp, last_updated_timestamp, lifecycle_stage
    logged_model_tags      model_id, key, value
    logged_model_params    model_id, key, value
    logged_model_metrics   model_id, key, value, timestamp, step, run_id,
                           dataset_name, dataset_digest
    registered_models      name, id, description, creation_timestamp, last_updated_timestamp
    registered_model_tags  name, key, value
    registered_model_aliases  name, alias, version
    model_versions         name, version, source, run_id, model_id, status, description,
                           creation_timestamp, last_updated_timestamp, current_stage
    model_version_tags     name, version, key, value

Deleted registered models and versions leave these views; their events stay.
"""

from __future__ import annotations

__all__ = ["MODEL_VIEWS"]

_ORDER = "(time, seq, writer)"


def _facts(kind: str, parts: int, first: bool = False) -> str:
    pick = "arg_min_null" if first else "arg_max_null"
    cols = ", ".join(f"json_extract_string(key, '$[{i}]') as k{i}" for i in range(parts))
    return f"""
        select experiment_id, {cols}, {pick}(text, {_ORDER}) as text,
               min(time) as first_time, max(time) as last_time
        from ev
        -- the CASE keeps json functions off other kinds' keys whatever order DuckDB picks
        where kind = '{kind}'
          and json_array_length(case when kind = '{kind}' then key end) = {parts}
        group by all
    """


def _pick(field: str, col: str = "k1") -> str:
    return f"any_value(text) filter (where {col} = '{field}')"


MODEL_VIEWS = {
    "logged_models": f"""
        with a as ({_facts("logged_model", 2)})
        select k0 as model_id, any_value(experiment_id) as experiment_id,
               {_pick("name")} as name, {_pick("status")} as status,
               {_pick("status_message")} as status_message,
               {_pick("model_type")} as model_type,
               {_pick("source_run_id")} as source_run_id,
               {_pick("artifact_location")} as artifact_location,
               cast({_pick("creation_timestamp")} as bigint) as creation_timestamp,
               max(last_time) as last_updated_timestamp,
               coalesce({_pick("lifecycle_stage")}, 'active') as lifecycle_stage
        from a group by k0 having {_pick("name")} is not null
    """,
    "logged_model_tags": f"""
        select k0 as model_id, k2 as key, text as value
        from ({_facts("logged_model", 3)}) where k1 = 'tag' and text is not null
    """,
    "logged_model_params": f"""
        select k0 as model_id, k2 as key, text as value
        from ({_facts("logged_model", 3, first=True)}) where k1 = 'param'
    """,
    "logged_model_metrics": f"""
        select k0 as model_id, k2 as key, cast(text as double) as value,
               cast(k4 as bigint) as timestamp, cast(k3 as bigint) as step,
               nullif(k5, '') as run_id, nullif(k6, '') as dataset_name,
               nullif(k7, '') as dataset_digest
        from ({_facts("logged_model", 8)}) where k1 = 'metric' and text is not null
    """,
    "registered_models": f"""
        with a as ({_facts("registered_model", 2)})
        select {_pick("name")} as name, k0 as id, {_pick("description")} as description,
               cast({_pick("creation_timestamp")} as bigint) as creation_timestamp,
               max(last_time) as last_updated_timestamp
        from a group by k0
        having {_pick("name")} is not null and {_pick("deleted")} is null
    """,
    "registered_model_tags": f"""
        select r.name, t.k2 as key, t.text as value
        from ({_facts("registered_model", 3)}) t join registered_models r on r.id = t.k0
        where t.k1 = 'tag' and t.text is not null
    """,
    "registered_model_aliases": f"""
        select r.name, t.k2 as alias, cast(t.text as bigint) as version
        from ({_facts("registered_model", 3)}) t join registered_models r on r.id = t.k0
        where t.k1 = 'alias' and t.text is not null
    """,
    "model_versions": f"""
        with a as ({_facts("model_version", 3)}),
        v as (
            select k0 as id, cast(k1 as bigint) as version,
                   {_pick("source", "k2")} as source, {_pick("run_id", "k2")} as run_id,
                   {_pick("model_id", "k2")} as model_id, {_pick("status", "k2")} as status,
                   {_pick("description", "k2")} as description,
                   {_pick("run_link", "k2")} as run_link,
                   cast({_pick("creation_timestamp", "k2")} as bigint) as creation_timestamp,
                   max(last_time) as last_updated_timestamp,
                   coalesce({_pick("current_stage", "k2")}, 'None') as current_stage,
                   {_pick("deleted", "k2")} as deleted
            from a group by k0, k1
        )
        select r.name, v.version, v.source, v.run_id, v.model_id, v.status, v.description,
               v.creation_timestamp, v.last_updated_timestamp, v.current_stage, v.run_link
        from v join registered_models r on r.id = v.id
        where v.source is not null and v.deleted is null
    """,
    "model_version_tags": f"""
        select r.name, cast(t.k1 as bigint) as version, t.k3 as key, t.text as value
        from ({_facts("model_version", 4)}) t join registered_models r on r.id = t.k0
        where t.k2 = 'tag' and t.text is not null
    """,
}
