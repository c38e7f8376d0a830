"""Logged models and the model registry, as events in the same log as runs.

Every change is an event (kinds ``logged_model``, ``registered_model``,
``model_version``; see :mod:`evtrack.store.log.model_views` for the key scheme and
the folded views). Three create-only claim files do what events cannot, exactly as
run ids and experiment names are claimed:

* ``models/<model_id>.json``: which experiment holds a logged model's events;
* ``registry/names/<sha256(name)>.json``: a registered model's name → its stable id
  (two processes creating one name: one wins, the other gets RESOURCE_ALREADY_EXISTS);
* ``registry/versions/<id>/<n>.json``: version ``n`` of a model, taken with a
  create-only write, so concurrent ``create_model_version`` calls get distinct numbers.

Registered models and versions live in the pseudo-experiment ``registry`` (its events
under ``experiments/registry/``, compacted and collected like any experiment's).
Writes are flushed before returning: acknowledged registry changes are durable.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evtrack.clock import now_ms
from evtrack.entities import Metric
from evtrack.errors import InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist
from evtrack.models.entities import LoggedModel, ModelVersion, RegisteredModel
from evtrack.models.paging import page, parse_order_by, sort_by
from evtrack.store.base import PagedList
from evtrack.tracking.validation import (
    check_metric_key,
    check_metric_value,
    check_step,
    check_timestamp,
)

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.store.log.store import LogStore

__all__ = ["REGISTRY_SCOPE", "ModelStore"]

REGISTRY_SCOPE = "registry"
_STATUSES = ("PENDING", "READY", "FAILED")
_ALIAS = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")


_TIMES = {"creation_timestamp": "creation_timestamp",
          "last_updated_timestamp": "last_updated_timestamp"}  # fmt: skip
_REGISTERED_ORDER = {**_TIMES, "name": "name", "timestamp": "last_updated_timestamp"}
_VERSION_ORDER = {**_REGISTERED_ORDER, "version_number": "version"}
_LOGGED_ORDER = {**_TIMES, "name": "name", "model_id": "model_id", "metrics.": "metrics."}


def _version_value(mv: ModelVersion, field: str) -> Any:
    return int(mv.version) if field == "version" else getattr(mv, field)


def _logged_value(model: LoggedModel, field: str) -> Any:
    if not field.startswith("metrics."):
        return getattr(model, field)
    points = [m for m in model.metrics if m.key == field[8:]]
    if not points:
        return None
    value = max(points, key=lambda m: (m.timestamp, m.step)).value
    return None if value != value else value  # NaN sorts with the missing


def _key(*parts: Any) -> str:
    return json.dumps([str(p) for p in parts])


class ModelStore:
    """Logged models and the registry over one tracking client's store and writer."""

    def __init__(self, tracking: LogStore) -> None:
        self.client = tracking  # the tracking store: experiments, runs, the writer
        self.store = tracking.layout

    # -- plumbing ------------------------------------------------------------------

    def _add(self, scope: str, kind: str, facts: list[tuple[tuple[Any, ...], Any]]) -> None:
        t = now_ms()
        for parts, value in facts:
            text = None if value is None else str(value)
            self.client.writer.add(scope, None, kind, _key(*parts), text, time_ms=t)
        self.client.writer.flush()

    def _query(
        self, scopes: list[str], sql: str, params: list[Any] | None = None
    ) -> list[dict[str, Any]]:
        from evtrack.store.log.views import connect, load_events, rows

        self.client.writer.flush()
        known = set(self.store.list_experiment_ids())
        events = load_events(self.store, [s for s in scopes if s in known], None, True)
        con = connect(events)
        try:
            return rows(con, sql, params)
        finally:
            con.close()  # the cursor only: the shared catalog stays open

    # -- logged models ---------------------------------------------------------------

    def _experiment_of_model(self, model_id: str) -> str:
        if not isinstance(model_id, str) or not re.fullmatch(r"m-[0-9a-f]{32}", model_id):
            raise InvalidParameterValue(
                f"Invalid logged model id {model_id!r}: expected m-<32 hex>."
            )
        try:
            data = self.store.read_bytes(self.store.path("models", model_id + ".json"))
        except FileNotFoundError:
            raise ResourceDoesNotExist(f"Logged model with ID '{model_id}' not found.") from None
        experiment_id: str = json.loads(data)["experiment_id"]
        return experiment_id

    def create_logged_model(
        self,
        experiment_id: str,
        name: str | None = None,
        source_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        model_type: str | None = None,
        artifact_location: str | None = None,
    ) -> LoggedModel:
        self.client.ensure_ready()
        exp = self.client.get_experiment(str(experiment_id))
        if exp.lifecycle_stage != "active":
            raise InvalidParameterValue(f"Experiment {experiment_id} is deleted.")
        if source_run_id:
            self.client.get_run(source_run_id)
        model_id = "m-" + uuid.uuid4().hex
        name = name or f"model-{model_id[2:10]}"
        location = (
            artifact_location or f"{exp.artifact_location.rstrip('/')}/models/{model_id}/artifacts"
        )
        self.store.put(
            self.store.path("models", model_id + ".json"),
            json.dumps({"experiment_id": exp.experiment_id}).encode(),
            create_only=True,
        )
        t = now_ms()
        facts: list[tuple[tuple[Any, ...], Any]] = [
            ((model_id, "name"), name),
            ((model_id, "status"), "PENDING"),
            ((model_id, "creation_timestamp"), t),
            ((model_id, "artifact_location"), location),
            ((model_id, "source_run_id"), source_run_id),
            ((model_id, "model_type"), model_type),
        ]
        facts += [((model_id, "tag", k), v) for k, v in (tags or {}).items()]
        facts += [((model_id, "param", k), v) for k, v in (params or {}).items()]
        self._add(exp.experiment_id, "logged_model", [f for f in facts if f[1] is not None])
        return self.get_logged_model(model_id)

    def get_logged_model(self, model_id: str, allow_deleted: bool = False) -> LoggedModel:
        experiment_id = self._experiment_of_model(model_id)
        found = self._logged_models([experiment_id], "model_id = ?", [model_id])
        if not found or (found[0].lifecycle_stage != "active" and not allow_deleted):
            raise ResourceDoesNotExist(f"Logged model with ID '{model_id}' not found.")
        return found[0]

    def _logged_models(self, scopes: list[str], where: str, params: list[Any]) -> list[LoggedModel]:
        sql = f"""
            select m.*,
              (select list({{'k': key, 'v': value}}) from logged_model_tags t
               where t.model_id = m.model_id) as tags,
              (select list({{'k': key, 'v': value}}) from logged_model_params p
               where p.model_id = m.model_id) as params,
              (select list(x order by x.key, x.step, x.timestamp) from logged_model_metrics x
               where x.model_id = m.model_id) as metrics
            from logged_models m where {where}
            order by creation_timestamp desc, model_id
        """
        out = []
        for r in self._query(scopes, sql, params):
            out.append(
                LoggedModel(
                    model_id=r["model_id"],
                    experiment_id=r["experiment_id"],
                    name=r["name"],
                    artifact_location=r["artifact_location"],
                    creation_timestamp=r["creation_timestamp"],
                    last_updated_timestamp=r["last_updated_timestamp"],
                    status=r["status"],
                    status_message=r["status_message"],
                    model_type=r["model_type"],
                    source_run_id=r["source_run_id"],
                    tags={d["k"]: d["v"] for d in r["tags"] or []},
                    params={d["k"]: d["v"] for d in r["params"] or []},
                    metrics=[
                        Metric(
                            d["key"],
                            d["value"],
                            d["timestamp"],
                            d["step"],
                            d["run_id"],
                            d["model_id"],
                            d["dataset_name"],
                            d["dataset_digest"],
                        )  # fmt: skip
                        for d in r["metrics"] or []
                    ],
                    lifecycle_stage=r["lifecycle_stage"],
                )
            )
        return out

    def search_logged_models(
        self,
        experiment_ids: list[str],
        filter_string: str | None = None,
        max_results: int | None = None,
        order_by: list[dict[str, Any]] | None = None,
        page_token: str | None = None,
    ) -> PagedList[LoggedModel]:
        """Active logged models, newest first unless ``order_by`` (MLflow 3's dicts,
        ``field_name`` one of name, model_id, creation_timestamp, last_updated_timestamp,
        metrics.<key>: its latest point) says otherwise; a page from ``page_token``."""
        order = parse_order_by(order_by, _LOGGED_ORDER)
        where, params = _filter_sql(
            filter_string,
            {"name": "name", "status": "status", "model_type": "model_type",
             "source_run_id": "source_run_id", "model_id": "model_id"},
        )  # fmt: skip
        found = self._logged_models(
            [str(e) for e in experiment_ids], f"lifecycle_stage = 'active' and {where}", params
        )
        return page(sort_by(found, order, _logged_value), max_results, page_token)

    def finalize_logged_model(self, model_id: str, status: str) -> LoggedModel:
        status = status.upper().removeprefix("LOGGED_MODEL_").replace("UPLOAD_FAILED", "FAILED")
        if status not in _STATUSES:
            raise InvalidParameterValue(f"Invalid status {status!r}: use READY or FAILED.")
        model = self.get_logged_model(model_id)
        self._add(model.experiment_id, "logged_model", [((model_id, "status"), status)])
        return self.get_logged_model(model_id)

    def set_logged_model_tags(self, model_id: str, tags: dict[str, str]) -> None:
        model = self.get_logged_model(model_id)
        self._add(
            model.experiment_id,
            "logged_model",
            [((model_id, "tag", k), v) for k, v in tags.items()],
        )

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        model = self.get_logged_model(model_id)
        if key not in model.tags:
            raise ResourceDoesNotExist(f"No tag with key {key!r} on logged model {model_id}.")
        self._add(model.experiment_id, "logged_model", [((model_id, "tag", key), None)])

    def log_model_params(self, model_id: str, params: dict[str, str]) -> None:
        model = self.get_logged_model(model_id)
        clash = {
            k: (model.params[k], v)
            for k, v in params.items()
            if k in model.params and model.params[k] != str(v)
        }
        if clash:
            raise InvalidParameterValue(
                f"Params of a logged model are immutable; these differ from the logged values: {clash}."
            )
        self._add(
            model.experiment_id,
            "logged_model",
            [((model_id, "param", k), v) for k, v in params.items()],
        )

    def log_model_metrics(self, run_id: str | None, metrics: Sequence[Metric]) -> None:
        """Log metric points linked to logged models (``Metric.model_id``): to the run
        as usual when ``run_id`` is given, and as facts of each logged model."""
        by_model: dict[str, list[Metric]] = {}
        for m in metrics:
            if m.model_id:
                by_model.setdefault(m.model_id, []).append(m)
        for m in metrics:
            if (m.dataset_name is None) != (m.dataset_digest is None):  # MLflow's rule
                raise InvalidParameterValue(
                    f"Metric {m.key!r}: give both dataset_name and dataset_digest, or neither."
                )
        models = {mid: self.get_logged_model(mid) for mid in by_model}  # unknown: 404 first
        if run_id:
            self.client.log_batch(run_id, metrics=list(metrics), synchronous=True)
        for mid, points in by_model.items():
            facts: list[tuple[tuple[Any, ...], Any]] = []
            for m in points:
                value = check_metric_value(m.value, check_metric_key(m.key))
                step = check_step(m.step or 0)
                ts = now_ms() if m.timestamp is None else check_timestamp(m.timestamp)
                parts = (mid, "metric", m.key, step, ts, run_id or m.run_id or "",
                         m.dataset_name or "", m.dataset_digest or "")  # fmt: skip
                facts.append((parts, repr(float(value))))
            self._add(models[mid].experiment_id, "logged_model", facts)

    def delete_logged_model(self, model_id: str) -> None:
        model = self.get_logged_model(model_id)
        self._add(model.experiment_id, "logged_model", [((model_id, "lifecycle_stage"), "deleted")])

    # -- registered models -----------------------------------------------------------

    def _name_path(self, name: str) -> str:
        return self.store.path(
            "registry", "names", hashlib.sha256(name.encode()).hexdigest() + ".json"
        )

    def _model_id(self, name: str) -> str:
        _check_name(name)
        try:
            rm_id: str = json.loads(self.store.read_bytes(self._name_path(name)))["id"]
        except FileNotFoundError:
            raise ResourceDoesNotExist(f"Registered Model with name={name} not found") from None
        return rm_id

    def create_registered_model(
        self, name: str, tags: dict[str, str] | None = None, description: str | None = None
    ) -> RegisteredModel:
        _check_name(name)
        self.client.ensure_ready()
        self.store.ensure_experiment_dir(REGISTRY_SCOPE, {"name": REGISTRY_SCOPE, "registry": True})
        rm_id = uuid.uuid4().hex
        try:
            self.store.put(
                self._name_path(name),
                json.dumps({"id": rm_id, "name": name}).encode(),
                create_only=True,
            )
        except FileExistsError:
            raise ResourceAlreadyExists(f"Registered Model (name={name}) already exists.") from None
        facts: list[tuple[tuple[Any, ...], Any]] = [
            ((rm_id, "name"), name),
            ((rm_id, "creation_timestamp"), now_ms()),
        ]
        if description:
            facts.append(((rm_id, "description"), description))
        facts += [((rm_id, "tag", k), v) for k, v in (tags or {}).items()]
        self._add(REGISTRY_SCOPE, "registered_model", facts)
        return self.get_registered_model(name)

    def _registered(self, where: str, params: list[Any]) -> list[RegisteredModel]:
        sql = f"""
            select r.*,
              (select list({{'k': key, 'v': value}}) from registered_model_tags t where t.name = r.name) as tags,
              (select list({{'k': alias, 'v': cast(version as varchar)}}) from registered_model_aliases a
               where a.name = r.name) as aliases,
              (select max(version) from model_versions v where v.name = r.name) as latest
            from registered_models r where {where} order by name
        """
        out = []
        for r in self._query([REGISTRY_SCOPE], sql, params):
            model = RegisteredModel(
                name=r["name"],
                creation_timestamp=r["creation_timestamp"],
                last_updated_timestamp=r["last_updated_timestamp"],
                description=r["description"],
                tags={d["k"]: d["v"] for d in r["tags"] or []},
                aliases={d["k"]: d["v"] for d in r["aliases"] or []},
            )
            if r["latest"] is not None:
                model.latest_versions = [self.get_model_version(r["name"], r["latest"])]
            out.append(model)
        return out

    def get_registered_model(self, name: str) -> RegisteredModel:
        rm_id = self._model_id(name)
        found = self._registered("r.id = ?", [rm_id])
        if not found:
            raise ResourceDoesNotExist(f"Registered Model with name={name} not found")
        return found[0]

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[RegisteredModel]:
        """By name unless ``order_by`` (MLflow's ``"name"``, ``"creation_timestamp"``,
        ``"last_updated_timestamp"``/``"timestamp"``, each ``ASC``/``DESC``) says otherwise."""
        order = parse_order_by(order_by, _REGISTERED_ORDER)
        where, params = _filter_sql(
            filter_string, {"name": "r.name"}, "r.name", "registered_model_tags"
        )
        found = sort_by(self._registered(where, params), order, getattr)
        return page(found, max_results, page_token)

    def update_registered_model(self, name: str, description: str | None) -> RegisteredModel:
        rm_id = self._model_id(name)
        self._add(REGISTRY_SCOPE, "registered_model", [((rm_id, "description"), description or "")])
        return self.get_registered_model(name)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        rm_id = self._model_id(name)
        _check_name(new_name)
        try:
            self.store.put(
                self._name_path(new_name),
                json.dumps({"id": rm_id, "name": new_name}).encode(),
                create_only=True,
            )
        except FileExistsError:
            raise ResourceAlreadyExists(
                f"Registered Model (name={new_name}) already exists."
            ) from None
        self._add(REGISTRY_SCOPE, "registered_model", [((rm_id, "name"), new_name)])
        self.store.fs.rm_file(self._name_path(name))
        return self.get_registered_model(new_name)

    def delete_registered_model(self, name: str) -> None:
        rm_id = self._model_id(name)
        self._add(REGISTRY_SCOPE, "registered_model", [((rm_id, "deleted"), now_ms())])
        self.store.fs.rm_file(self._name_path(name))  # the name is free again

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        _check_tag_key(key)
        self._add(REGISTRY_SCOPE, "registered_model", [((self._model_id(name), "tag", key), value)])

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        model = self.get_registered_model(name)
        if key not in model.tags:
            raise ResourceDoesNotExist(f"No tag with key {key!r} on registered model {name!r}.")
        self._add(REGISTRY_SCOPE, "registered_model", [((self._model_id(name), "tag", key), None)])

    # -- versions ----------------------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        model_id: str | None = None,
    ) -> ModelVersion:
        rm_id = self._model_id(name)
        if not source:
            raise InvalidParameterValue("A model version needs a source (a model URI or path).")
        if model_id:
            self.get_logged_model(model_id)
        folder = self.store.path("registry", "versions", rm_id)
        taken = [
            int(n.split(".")[0]) for n in self.store.listdir(folder) if n.split(".")[0].isdigit()
        ]
        version = max(taken, default=0) + 1
        for _ in range(1000):
            try:
                self.store.put(
                    f"{folder}/{version}.json",
                    json.dumps({"source": source}).encode(),
                    create_only=True,
                )
                break
            except FileExistsError:
                version += 1
        facts: list[tuple[tuple[Any, ...], Any]] = [
            ((rm_id, version, "source"), source),
            ((rm_id, version, "status"), "READY"),
            ((rm_id, version, "creation_timestamp"), now_ms()),
            ((rm_id, version, "run_id"), run_id),
            ((rm_id, version, "model_id"), model_id),
            ((rm_id, version, "run_link"), run_link),
            ((rm_id, version, "description"), description),
        ]
        facts += [((rm_id, version, "tag", k), v) for k, v in (tags or {}).items()]
        self._add(REGISTRY_SCOPE, "model_version", [f for f in facts if f[1] is not None])
        return self.get_model_version(name, version)

    def _versions(self, where: str, params: list[Any]) -> list[ModelVersion]:
        sql = f"""
            select v.*,
              (select list({{'k': key, 'v': value}}) from model_version_tags t
               where t.name = v.name and t.version = v.version) as tags,
              (select list(alias) from registered_model_aliases a
               where a.name = v.name and a.version = v.version) as aliases
            from model_versions v where {where} order by v.name, v.version desc
        """
        return [
            ModelVersion(
                name=r["name"],
                version=str(r["version"]),
                creation_timestamp=r["creation_timestamp"],
                last_updated_timestamp=r["last_updated_timestamp"],
                source=r["source"],
                run_id=r["run_id"],
                model_id=r["model_id"],
                status=r["status"] or "READY",
                description=r["description"],
                current_stage=r["current_stage"],
                run_link=r["run_link"],
                tags={d["k"]: d["v"] for d in r["tags"] or []},
                aliases=sorted(r["aliases"] or []),
            )
            for r in self._query([REGISTRY_SCOPE], sql, params)
        ]

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        self._model_id(name)
        number = _version(version)
        found = self._versions("v.name = ? and v.version = ?", [name, number])
        if not found:
            raise ResourceDoesNotExist(f"Model Version (name={name}, version={version}) not found")
        return found[0]

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[ModelVersion]:
        """By name, newest version first, unless ``order_by`` (``"name"``,
        ``"version_number"``, ``"creation_timestamp"``, ``"last_updated_timestamp"``)."""
        order = parse_order_by(order_by, _VERSION_ORDER)
        where, params = _filter_sql(
            filter_string,
            {"name": "v.name", "run_id": "v.run_id", "source_path": "v.source",
             "version_number": "v.version", "model_id": "v.model_id"},
            "v.name", None,
        )  # fmt: skip
        found = sort_by(self._versions(where, params), order, _version_value)
        return page(found, max_results, page_token)

    def update_model_version(
        self, name: str, version: str | int, description: str | None
    ) -> ModelVersion:
        mv = self.get_model_version(name, version)
        self._add(
            REGISTRY_SCOPE,
            "model_version",
            [((self._model_id(name), mv.version, "description"), description or "")],
        )
        return self.get_model_version(name, version)

    def delete_model_version(self, name: str, version: str | int) -> None:
        mv = self.get_model_version(name, version)
        rm_id = self._model_id(name)
        facts: list[tuple[tuple[Any, ...], Any]] = [((rm_id, mv.version, "deleted"), now_ms())]
        facts += [((rm_id, "alias", a), None) for a in mv.aliases]  # as MLflow: aliases go too
        self._add(REGISTRY_SCOPE, "model_version", facts[:1])
        if len(facts) > 1:
            self._add(REGISTRY_SCOPE, "registered_model", facts[1:])

    def set_model_version_tag(self, name: str, version: str | int, key: str, value: str) -> None:
        _check_tag_key(key)
        mv = self.get_model_version(name, version)
        self._add(
            REGISTRY_SCOPE,
            "model_version",
            [((self._model_id(name), mv.version, "tag", key), value)],
        )

    def delete_model_version_tag(self, name: str, version: str | int, key: str) -> None:
        mv = self.get_model_version(name, version)
        if key not in mv.tags:
            raise ResourceDoesNotExist(f"No tag with key {key!r} on {name!r} version {version}.")
        self._add(
            REGISTRY_SCOPE,
            "model_version",
            [((self._model_id(name), mv.version, "tag", key), None)],
        )

    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        if (
            not isinstance(alias, str)
            or not _ALIAS.match(alias)
            or alias.lower() == "latest"
            or re.fullmatch(r"[vV]\d+", alias)
        ):
            raise InvalidParameterValue(
                f"Invalid alias {alias!r}: use letters, digits, '_' and '-' (not 'latest' or "
                "v<number>, which look like versions)."
            )
        mv = self.get_model_version(name, version)
        self._add(
            REGISTRY_SCOPE,
            "registered_model",
            [((self._model_id(name), "alias", alias), mv.version)],
        )

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        model = self.get_registered_model(name)
        if alias not in model.aliases:
            raise ResourceDoesNotExist(f"Registered model alias {alias} not found.")
        self._add(
            REGISTRY_SCOPE, "registered_model", [((self._model_id(name), "alias", alias), None)]
        )

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        model = self.get_registered_model(name)
        if alias not in model.aliases:
            raise ResourceDoesNotExist(f"Registered model alias {alias} not found.")
        return self.get_model_version(name, model.aliases[alias])


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterValue("Registered model name cannot be empty.")
    if len(name) > 256:
        raise InvalidParameterValue("Registered model name is longer than 256 characters.")


def _check_tag_key(key: Any) -> None:
    if not isinstance(key, str) or not key or len(key) > 250:
        raise InvalidParameterValue(
            f"Invalid tag key {key!r}: a non-empty string of at most 250 characters."
        )


def _version(version: Any) -> int:
    try:
        number = int(str(version))
    except ValueError:
        raise InvalidParameterValue(f"Model version must be an integer, got {version!r}.") from None
    if number < 1:
        raise InvalidParameterValue(f"Model version must be positive, got {version!r}.")
    return number


_CLAUSE = re.compile(
    r"""\s*(?P<ident>`[^`]+`|tags?\.`[^`]+`|[A-Za-z_][\w.]*)\s*
        (?P<op>=|!=|<>|LIKE|ILIKE|IN)\s*
        (?P<value>'(?:[^']|'')*'|"(?:[^"]|"")*"|\((?:[^()])*\)|-?\d+)\s*""",
    re.IGNORECASE | re.VERBOSE,
)


def _literal(text: str) -> str | int:
    if text[0] in "'\"":
        return text[1:-1].replace(text[0] * 2, text[0])
    return int(text)


def _filter_sql(
    filter_string: str | None,
    columns: dict[str, str],
    name_col: str = "name",
    tags_view: str | None = None,
) -> tuple[str, list[Any]]:
    """MLflow's registry filters (``name = 'x'``, ``name LIKE 'a%'``, ``run_id IN (…)``,
    ``tags.k = 'v'``, joined with AND) as parameterised SQL."""
    if not filter_string or not filter_string.strip():
        return "true", []
    parts = re.split(r"\s+AND\s+", filter_string.strip(), flags=re.IGNORECASE)
    clauses, params = [], []
    for part in parts:
        m = _CLAUSE.fullmatch(part)
        if m is None:
            raise InvalidParameterValue(
                f"Invalid filter {part!r}: use <attribute> = 'value', LIKE, ILIKE or IN (…), "
                f"with attributes {sorted(columns)}" + (" or tags.<key>." if tags_view else ".")
            )
        ident, op, raw = m["ident"], m["op"].upper(), m["value"]
        if ident.startswith("`"):
            ident = ident.strip("`")
        op = "!=" if op == "<>" else op
        if op == "IN":
            items = [_literal(v.strip()) for v in re.findall(r"'(?:[^']|'')*'|-?\d+", raw)]
            if not items:
                raise InvalidParameterValue(f"Empty IN list in filter {part!r}.")
            value_sql, values = f"({', '.join('?' * len(items))})", items
        else:
            value_sql, values = "?", [_literal(raw)]
        if ident.startswith(("tags.", "tag.")) and tags_view:
            key = ident.split(".", 1)[1].strip("`")
            # != matches models without the tag too (MLflow's rule for tag filters)
            negate, cmp = ("not ", "=") if op == "!=" else ("", op)
            clauses.append(
                f"{negate}exists (select 1 from {tags_view} t where t.name = {name_col} "
                f"and t.key = ? and t.value {cmp} {value_sql})"
            )
            params += [key, *values]
        elif ident in columns:
            clauses.append(f"{columns[ident]} {op} {value_sql}")
            params += values
        else:
            raise InvalidParameterValue(
                f"Invalid attribute {ident!r} in filter: use {sorted(columns)}"
                + (" or tags.<key>." if tags_view else ".")
            )
    return " and ".join(clauses), params
