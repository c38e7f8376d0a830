"""evtrack's search must return what MLflow's returns on the same data.

One deterministic data set (``build_spec``: 60 runs in two experiments with params,
multi-step metrics incl. NaN and +-inf, missing keys, tags, statuses, deleted runs,
plus a few experiments) is logged into a real MLflow (SQLite store, in its own
virtualenv, see ``mlflow_venv.py``) and every query of ``RUN_QUERIES`` /
``EXPERIMENT_QUERIES`` is run there. The ordered run names (or the error code) are
the expected answers for evtrack:

* ``test_runs_on_views`` folds events holding the same data through evtrack's real
  views (with MLflow's run ids, so even ``run_id`` tie-breaks are comparable) and runs
  the compiler on them.
* ``test_runs_through_client`` logs the data through ``evtrack.MlflowClient`` and
  searches through it.
* the ``*_parse_*`` tests compare the parser with MLflow's on a corpus of filter and
  order_by strings, including invalid ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evtrack.errors import EvtrackError
from evtrack.search.compiler import search_experiment_ids, search_run_ids
from evtrack.search.parser import (
    parse_experiments_filter,
    parse_experiments_order_by,
    parse_filter,
    parse_order_by,
)

sys.path.insert(0, str(Path(__file__).parent))
from mlflow_venv import mlflow_python_fixture  # noqa: E402,F401  (the mlflow_python fixture)
from test_search_compiler import ViewEvents  # noqa: E402

pytestmark = pytest.mark.mlflow

BASE_TIME = 1_700_000_000_000
NAN, INF = float("nan"), float("inf")


def build_spec() -> dict[str, Any]:
    """60 runs whose values exercise every corner the queries below look at."""
    runs = []
    for i in range(60):
        status = ["FINISHED", "FAILED", "RUNNING", "KILLED"][i % 4] if i % 10 else "FINISHED"
        start = BASE_TIME + ((i * 37) % 60) * 1000  # unique, not in index order
        params = {"alpha": str(round(0.1 * (i % 5), 1)), "depth": str(i % 12)}
        params["lr"] = ["0.001", "0.01", "0.1", "1", "10"][i % 5]
        if i % 6 != 5:
            params["optimizer"] = ["adam", "Adam", "sgd", "SGD_momentum"][i % 4]
        if i % 4 == 0:
            params["my param"] = "x" if i % 8 == 0 else "it's"
        tags = {"priority": str(i % 3)}
        if i % 4 != 3:
            tags["team"] = ["core", "Core", "ml"][i % 4]
        if i % 5 == 0:
            tags["note"] = ["100%_done", "a_b", "100 percent", "A%B"][(i // 5) % 4]
        metrics = []
        if i % 8 != 7:  # rmse: three steps, logged out of order; latest is the highest step
            for step in (2, 0, 1):
                metrics.append(["rmse", round(1.0 / (1 + i + step), 4), BASE_TIME + step, step])
        acc = round((i % 10) / 10, 2)
        acc_latest = NAN if i % 9 == 4 else INF if i % 13 == 6 else -INF if i % 13 == 7 else acc
        metrics.append(["acc", 0.5, BASE_TIME, 0])
        metrics.append(["acc", acc_latest, BASE_TIME + 5, 1])
        if i % 11 == 3:  # an earlier NaN, superseded by a real value
            metrics.append(["acc", NAN, BASE_TIME + 1, 0])
        if i % 3 == 0:  # same step: the later timestamp wins; same timestamp: the larger value
            metrics.append(["val loss", -float(i), BASE_TIME + 10, 3])
            metrics.append(["val loss", -float(i) - 0.5, BASE_TIME + 9, 3])
            metrics.append(["val loss", -float(i) + 0.25, BASE_TIME + 10, 3])
        runs.append(
            {
                "name": f"Run-{i:02d}-Alpha" if i % 7 == 0 else f"run-{i:02d}",
                "experiment": 1 if i >= 50 else 0,
                "start_time": start,
                "end_time": None if status == "RUNNING" else start + (i % 5) * 100 + 50,
                "status": status,
                "user": "alice" if i % 2 else "bob",
                "params": params,
                "tags": tags,
                "metrics": metrics,
                "deleted": i in (5, 17, 52),
            }
        )
    experiments = [
        {"name": "runs-main", "tags": {"team": "core"}, "deleted": False},
        {"name": "runs-side", "tags": {"team": "ml", "stage": "dev"}, "deleted": False},
        {"name": "Exp-Upper", "tags": {"team": "Core"}, "deleted": False},
        {"name": "exp_under", "tags": {}, "deleted": False},
        {"name": "exp-gone", "tags": {"team": "core"}, "deleted": True},
        {"name": "exp 100%", "tags": {"stage": "prod"}, "deleted": False},
    ]
    return {"runs": runs, "experiments": experiments}


def q(filter_string: str | None = None, order_by: list[str] | None = None, **kw: Any) -> dict:
    return {
        "filter": filter_string,
        "order_by": order_by,
        "experiments": kw.get("experiments", [0, 1]),
        "view": kw.get("view", 1),
        "max_results": kw.get("max_results", 1000),
        "page_size": kw.get("page_size"),
    }


RUN_QUERIES: dict[str, dict] = {
    "all": q(),
    "all-deleted": q(view=2),
    "all-views": q(view=3, order_by=["run_name"]),
    "one-experiment": q(experiments=[1]),
    "rmse-lt": q("metrics.rmse < 0.05"),
    "rmse-and-param": q("metrics.rmse >= 0.03 and params.optimizer = 'adam'"),
    "acc-ne": q("metrics.acc != 0.5"),
    "acc-eq": q("metrics.acc = 0.5"),
    "acc-gt": q("metrics.acc > 0.85"),
    "acc-lt0": q("metrics.acc < 0"),
    "acc-dblmax": q("metrics.acc = 1.7976931348623157e308"),
    "acc-ge-neg": q("metrics.acc >= -1e308"),
    "val-loss": q("metrics.`val loss` < -20.5"),
    "val-loss-eq": q('metrics."val loss" = -8.75'),
    "param-ne": q("params.optimizer != 'adam'"),
    "param-like": q("params.optimizer LIKE 'a%'"),
    "param-ilike": q("params.optimizer ILIKE 'A%'"),
    "param-underscore": q("params.optimizer LIKE '___'"),
    "param-is-null": q("params.optimizer IS NULL"),
    "param-not-null": q("params.optimizer IS NOT NULL and params.lr = '10'"),
    "param-quoted-key": q('params.`my param` = "it\'s"'),
    "param-depth": q("params.depth = '10'"),
    "tag-eq": q("tags.team = 'core'"),
    "tag-ilike": q("tags.team ILIKE 'CORE'"),
    "tag-is-null": q("tags.team IS NULL"),
    "tag-like-percent": q("tags.note LIKE '100%'"),
    "tag-like-underscore": q("tags.note LIKE 'a_b'"),
    "tag-runname": q("tags.mlflow.runName = 'run-04'"),
    "status-eq": q("attributes.status = 'FINISHED'"),
    "status-ne": q("status != 'RUNNING'"),
    "status-like": q("status LIKE '%ED'"),
    "run-name-eq": q("run_name = 'run-03'"),
    "run-name-like": q("attributes.run_name LIKE 'Run-%'"),
    "run-name-alias": q("`Run name` ILIKE 'run-0%'"),
    "start-gt": q(f"attributes.start_time > {BASE_TIME + 30_000}"),
    "created-le": q(f"created <= {BASE_TIME + 10_000}"),
    "end-gt": q(f"end_time > {BASE_TIME + 30_000}"),
    "end-ne": q("end_time != 0"),
    "run-id-in": q("attributes.run_id IN ('{run:3}', '{run:8}', '{run:51}')"),
    "run-id-not-in": q("run_id NOT IN ('{run:3}') and params.lr = '10'"),
    "user": q("user_id = 'alice' and params.alpha = '0.2'"),
    "combo": q("params.lr = '0.01' and metrics.rmse > 0.02 and tags.team != 'ml'"),
    "stray-and": q("AND params.lr = '1' AND AND tags.priority = '2' AND"),
    "datasets-none": q("datasets.name = 'x'"),
    "order-rmse": q(order_by=["metrics.rmse"]),
    "order-rmse-desc": q(order_by=["metrics.rmse DESC"]),
    "order-acc": q(order_by=["metrics.acc ASC"]),
    "order-acc-desc": q(order_by=["metrics.acc DESC"]),
    "order-depth": q(order_by=["params.depth"]),
    "order-optimizer": q(order_by=["params.optimizer DESC"]),
    "order-two": q(order_by=["tags.team", "metrics.rmse DESC"]),
    "order-end": q(order_by=["attributes.end_time"]),
    "order-end-desc": q(order_by=["end_time DESC"]),
    "order-status": q(order_by=["status", "params.alpha DESC"]),
    "order-start-asc": q(order_by=["start_time ASC"]),
    "order-created": q(order_by=["created"]),
    "order-user": q(order_by=["user_id", "metrics.`val loss`"]),
    "order-run-id": q(order_by=["run_id DESC"], experiments=[1]),
    "filter-and-order": q("metrics.acc > 0.3", ["metrics.acc DESC", "run_name"]),
    "pages": q(order_by=["metrics.rmse"], page_size=7),
    "pages-filter": q("params.optimizer IS NOT NULL", ["tags.team DESC"], page_size=9),
    "limit": q(order_by=["params.lr"], max_results=5),
    "err-or": q("metrics.rmse > 0.5 OR params.lr = '1'"),
    "err-param-gt": q("params.lr > '1'"),
    "err-metric-str": q("metrics.rmse = '1'"),
    "err-entity": q("foo.x = 1"),
    "err-is-null-attr": q("start_time IS NULL"),
    "err-status-in": q("status IN ('FINISHED')"),
    "err-not-like": q("params.optimizer NOT LIKE 'a%'"),
    "err-ltgt": q("metrics.rmse <> 1"),
    "err-tag-in": q("tags.team IN ('core')"),
    "err-paren": q("(params.lr = '1')"),
    "err-order-key": q(order_by=["foo"]),
    "err-order-dataset": q(order_by=["datasets.name"]),
    "err-max-results": q(max_results=50001),
    "err-max-results-0": q(max_results=0),
}

# Run ids are random in both systems, so sorting by them only compares on the views,
# where evtrack is loaded with MLflow's own ids.
ORDERED_BY_RANDOM_IDS = {"order-run-id"}

EXPERIMENT_QUERIES: dict[str, dict] = {
    "all": {"filter": None},
    "deleted": {"filter": None, "view": 2},
    "every": {"filter": None, "view": 3, "order_by": ["name"]},
    "name-eq": {"filter": "name = 'runs-side'"},
    "name-like": {"filter": "attribute.name LIKE 'exp%'"},
    "name-ilike": {"filter": "name ILIKE 'EXP%'", "order_by": ["name DESC"]},
    "name-ne": {"filter": "name != 'Default'"},
    "tag-eq": {"filter": "tags.team = 'core'", "view": 3},
    "tag-null": {"filter": "tags.team IS NULL"},
    "tag-not-null": {"filter": "tag.stage IS NOT NULL"},
    "ctime": {"filter": "creation_time >= {ctime:2}", "order_by": ["creation_time ASC"]},
    "id-eq": {"filter": "experiment_id = '{exp:1}'"},
    "id-in": {"filter": "experiment_id IN ('{exp:1}', '{exp:3}')"},
    "order-id": {"filter": None, "order_by": ["experiment_id DESC"]},
    "order-update": {"filter": None, "order_by": ["last_update_time", "name"]},
    "pages": {"filter": None, "order_by": ["name"], "page_size": 2},
    "err-attributes": {"filter": "attributes.name = 'x'"},
    "err-name-in": {"filter": "name IN ('x')"},
    "err-float-time": {"filter": "creation_time > 5.5"},
    "err-order-tag": {"filter": None, "order_by": ["tags.team"]},
}

# fmt: off
FILTER_CORPUS = [
    'metrics.x > -1', 'metrics.x>-1', 'metrics.x > 1e5', 'metrics.x > 1.5E-3', 'metrics.x > .5',
    'metrics.x > 1.', 'metrics.x > +1', "metrics.x = '1'", 'params.x = "abc"',
    "params.x = 'it''s'", 'params.x = abc', 'params.x = 1', "tags.mlflow.source.type = 'LOCAL'",
    'tags."a b" = \'c\'', "tags.`a b` = 'c'", "tags.'a b' = 'c'", "`tags`.x = 'c'",
    'metrics . x > 1', 'metrics.x > 1 metrics.y < 2', 'metrics.x > 1;',
    'metrics.x > 1; metrics.y < 2', "attributes.run_id IN ('a', 'b')", "run_id IN ('a',)",
    "run_id IN ('a' 'b')", 'run_id IN ()', 'run_id IN (1, 2)', "run_id not in ('a')",
    "run_id IN ['a']", "run_id IN 'a'", 'start_time > 5.5', "start_time = '5'",
    'end_time IS NULL', 'params.x is not null', 'metrics.x IS NULL', 'Created >= 100',
    '"run name" = \'a\'', "attr.status = 'a'", "run.status LIKE 'a'",
    "lifecycle_stage = 'active'", "experiment_id = '0'", "datasets.digest IN ('a','b')",
    "datasets.context = 'train'", "datasets.foo = 'a'", 'metrics.x LIKE 1', 'metrics.x == 1',
    "params.learning-rate = '0.1'", "params.x.y = 'a'", "params.`x`.y = 'a'", 'metrics.`a.b` > 1',
    '"metrics.a" > 1', 'metrics.x > 1 -- c', 'metrics.x > NULL', "params.x IS 'a'",
    "NOT params.x = 'a'", 'metrics.x', '1 > metrics.x', "params.x = 'a' = 'b'", 'metrics.x > 1 2',
    '   ', 'metrics.1x > 1', 'metrics.é > 1', 'metrics.x BETWEEN 1 AND 2', "params.x LIKE'a'",
    'metrics.x > 0x10', "params.x = ''", "params.status = 'a'", "params.select = 'a'",
    'metrics.x > 1 And metrics.y > 2',
]
ORDER_CORPUS = [
    'metrics.rmse DESC', 'metrics.rmse desc', 'attributes.start_time', 'status',
    'metrics."my metric" DESC', 'metrics.`my metric` DESC', "metrics.'my metric' DESC",
    'tags.mlflow.runName', 'Run name', '`run name`', 'Created DESC', 'experiment_id', 'timestamp',
    'metrics.x DESC NULLS LAST', 'metrics.x DESCENDING', 'metrics.x ASC DESC',
    'metrics.x,metrics.y', 'foo.x', 'run.status', 'metrics.x+y', 'datasets.name', '',
]
EXPERIMENT_FILTER_CORPUS = [
    "name = 'a'", "attribute.name = 'a'", "attributes.name = 'a'", "name IN ('a')",
    "experiment_id IN ('1','2')", "experiment_id > '1'", 'creation_time > 5',
    'creation_time > 5.5', "creation_time = '5'", 'tags.x IS NULL', "tags.x IN ('a')",
    "`tags`.x = 'a'", "params.x = 'a'", 'name IS NULL', "lifecycle_stage = 'active'",
    "tag.x LIKE 'a%'",
]

# fmt: on

MLFLOW_SCRIPT = r"""
import json, logging, os, re, sys, tempfile, time
logging.disable(logging.WARNING)
payload = json.load(sys.stdin)
uri = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "mlflow.db")
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.search_utils import SearchUtils, SearchExperimentsUtils
client = MlflowClient(tracking_uri=uri)
spec = payload["spec"]
exp_ids = []
for e in spec["experiments"]:
    exp_ids.append(client.create_experiment(e["name"], tags=e["tags"]))
    time.sleep(0.01)  # distinct creation times
run_ids = []
for r in spec["runs"]:
    run = client.create_run(exp_ids[r["experiment"]], start_time=r["start_time"],
                            tags={"mlflow.user": r["user"]}, run_name=r["name"])
    rid = run.info.run_id
    run_ids.append(rid)
    client.log_batch(rid, metrics=[Metric(k, v, ts, s) for k, v, ts, s in r["metrics"]],
                     params=[Param(k, v) for k, v in r["params"].items()],
                     tags=[RunTag(k, v) for k, v in r["tags"].items()])
    if r["status"] != "RUNNING":
        client.set_terminated(rid, r["status"], end_time=r["end_time"])
    if r["deleted"]:
        client.delete_run(rid)
for e, eid in zip(spec["experiments"], exp_ids):
    if e["deleted"]:
        client.delete_experiment(eid)
runs_out = []
for rid in run_ids:
    run = client.get_run(rid)
    i = run.info
    runs_out.append({"run_id": rid, "experiment_id": i.experiment_id, "name": i.run_name,
                     "user_id": i.user_id, "status": i.status, "start_time": i.start_time,
                     "end_time": i.end_time, "lifecycle_stage": i.lifecycle_stage,
                     "artifact_uri": i.artifact_uri, "tags": run.data.tags})
exps_out = []
for e in client.search_experiments(view_type=3, max_results=1000):
    exps_out.append({"experiment_id": e.experiment_id, "name": e.name,
                     "artifact_location": e.artifact_location,
                     "lifecycle_stage": e.lifecycle_stage, "creation_time": e.creation_time,
                     "last_update_time": e.last_update_time, "tags": e.tags})
ctimes = {i: c.get_experiment(eid).creation_time for i, eid in enumerate(exp_ids)
          for c in [client]}

def render(text):
    if text is None:
        return None
    text = re.sub(r"\{run:(\d+)\}", lambda m: run_ids[int(m.group(1))], text)
    text = re.sub(r"\{exp:(\d+)\}", lambda m: exp_ids[int(m.group(1))], text)
    return re.sub(r"\{ctime:(\d+)\}", lambda m: str(ctimes[int(m.group(1))]), text)

def answer(call, names):
    try:
        return {"names": names(call(None))}
    except MlflowException as exc:
        return {"error": exc.error_code}

def paged(call, names, page_size):
    pages, token = [], None
    try:
        while True:
            res = call(token, page_size)
            pages.append(names(res))
            token = res.token
            if not token:
                return {"pages": pages}
    except MlflowException as exc:
        return {"error": exc.error_code}

run_names = lambda res: [r.info.run_name for r in res]
exp_names = lambda res: [e.name for e in res]
run_results = {}
for qid, qq in payload["run_queries"].items():
    ids = [exp_ids[i] for i in qq["experiments"]]
    def call(token, size=qq["max_results"], qq=qq, ids=ids):
        return client.search_runs(ids, render(qq["filter"]) or "", qq["view"], size,
                                  qq["order_by"], token)
    run_results[qid] = (paged(call, run_names, qq["page_size"]) if qq["page_size"]
                        else answer(call, run_names))
exp_results = {}
for qid, qq in payload["exp_queries"].items():
    def call(token, size=1000, qq=qq):
        return client.search_experiments(qq.get("view", 1), size, render(qq["filter"]),
                                         qq.get("order_by"), token)
    exp_results[qid] = (paged(call, exp_names, qq["page_size"]) if qq.get("page_size")
                        else answer(call, exp_names))

def normal(d):
    key = SearchUtils.translate_key_alias(d["key"]) if d["type"] == "attribute" else d["key"]
    value = d["value"]
    if d["type"] == "metric":
        value = float(value)
    elif isinstance(value, tuple):
        value = list(value)
    return [d["type"], key, d["comparator"].upper(), value]

def parse_run_filter(f):
    try:
        parsed = SearchUtils.parse_search_filter(f)
        client.search_runs([exp_ids[0]], f)
        return {"ok": [normal(d) for d in parsed]}
    except MlflowException as exc:
        return {"error": exc.error_code}
    except Exception as exc:
        return {"crash": type(exc).__name__}

def parse_order(o):
    try:
        t, k, asc = SearchUtils.parse_order_by_for_search_runs(o)
        client.search_runs([exp_ids[0]], "", order_by=[o])
        return {"ok": [t, SearchUtils.translate_key_alias(k) if t == "attribute" else k, asc]}
    except MlflowException as exc:
        return {"error": exc.error_code}
    except Exception as exc:
        return {"crash": type(exc).__name__}

def parse_exp_filter(f):
    try:
        parsed = SearchExperimentsUtils.parse_search_filter(f)
        client.search_experiments(filter_string=f)
        return {"ok": [normal(d) for d in parsed]}
    except MlflowException as exc:
        return {"error": exc.error_code}
    except Exception as exc:
        return {"crash": type(exc).__name__}

print("\n=== RESULT ===")
print(json.dumps({
    "run_ids": run_ids, "exp_ids": exp_ids, "ctimes": ctimes, "runs": runs_out,
    "experiments": exps_out, "run_results": run_results, "exp_results": exp_results,
    "filters": {f: parse_run_filter(f) for f in payload["filters"]},
    "orders": {o: parse_order(o) for o in payload["orders"]},
    "exp_filters": {f: parse_exp_filter(f) for f in payload["exp_filters"]},
}))
"""


@pytest.fixture(scope="module")
def mlflow_answers(mlflow_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Everything MLflow answers for the data set and the queries (one subprocess)."""
    payload = {
        "spec": build_spec(),
        "run_queries": RUN_QUERIES,
        "exp_queries": EXPERIMENT_QUERIES,
        "filters": FILTER_CORPUS,
        "orders": ORDER_CORPUS,
        "exp_filters": EXPERIMENT_FILTER_CORPUS,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))}
    proc = subprocess.run(
        [str(mlflow_python), "-c", MLFLOW_SCRIPT],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path_factory.mktemp("mlflow"),  # never import mlflow from a source tree
        check=False,
    )
    if proc.returncode != 0 or "=== RESULT ===" not in proc.stdout:
        pytest.fail(f"MLflow script failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    answers: dict = json.loads(proc.stdout.split("=== RESULT ===", 1)[1])
    answers["ctimes"] = {int(k): v for k, v in answers["ctimes"].items()}
    return answers


def render(text: str | None, run_ids: list[str], exp_ids: list[str], ctimes: dict) -> str | None:
    if text is None:
        return None
    text = re.sub(r"\{run:(\d+)\}", lambda m: run_ids[int(m.group(1))], text)
    text = re.sub(r"\{exp:(\d+)\}", lambda m: exp_ids[int(m.group(1))], text)
    return re.sub(r"\{ctime:(\d+)\}", lambda m: str(ctimes[int(m.group(1))]), text)


@pytest.fixture(scope="module")
def views(mlflow_answers: dict) -> Any:
    """The real evtrack views over events holding the same data as MLflow's store (every
    metric point, so ``latest_metrics`` is evtrack's own fold)."""
    log = ViewEvents()
    spec = build_spec()
    for r, m in zip(spec["runs"], mlflow_answers["runs"], strict=True):
        rid, exp = m["run_id"], m["experiment_id"]
        attrs = {k: m[k] for k in ("user_id", "status", "start_time", "end_time")}
        attrs.update(run_name=m["name"], lifecycle_stage=m["lifecycle_stage"])
        log.run(rid, exp, {**attrs, "artifact_uri": m["artifact_uri"]}, r["params"], m["tags"])
        for key, value, ts, step in r["metrics"]:
            log.metric(rid, exp, key, value, step, ts)
    for e in mlflow_answers["experiments"]:
        keys = ("name", "artifact_location", "lifecycle_stage", "creation_time", "last_update_time")
        log.experiment(e["experiment_id"], {k: e[k] for k in keys}, e["tags"])
    con = log.connect()
    yield con
    con.close()


def _evtrack_runs(con: Any, query: dict, answers: dict) -> dict:
    run_names = dict(con.execute("SELECT run_id, run_name FROM runs").fetchall())
    ids = [answers["exp_ids"][i] for i in query["experiments"]]
    text = render(query["filter"], answers["run_ids"], answers["exp_ids"], answers["ctimes"])
    try:
        if not query["page_size"]:
            found, _ = search_run_ids(
                con, ids, text, query["view"], query["max_results"], query["order_by"]
            )
            return {"names": [run_names[r] for r in found]}
        pages, token = [], None
        while True:
            found, token = search_run_ids(
                con, ids, text, query["view"], query["page_size"], query["order_by"], token
            )
            pages.append([run_names[r] for r in found])
            if not token:
                return {"pages": pages}
    except EvtrackError as exc:
        return {"error": exc.error_code}


@pytest.mark.parametrize("qid", sorted(RUN_QUERIES))
def test_runs_on_views(qid: str, views: Any, mlflow_answers: dict) -> None:
    expected = mlflow_answers["run_results"][qid]
    assert _evtrack_runs(views, RUN_QUERIES[qid], mlflow_answers) == expected


@pytest.mark.parametrize("qid", sorted(EXPERIMENT_QUERIES))
def test_experiments_on_views(qid: str, views: Any, mlflow_answers: dict) -> None:
    query = EXPERIMENT_QUERIES[qid]
    names = dict(views.execute("SELECT experiment_id, name FROM experiments").fetchall())
    text = render(query["filter"], [], mlflow_answers["exp_ids"], mlflow_answers["ctimes"])
    try:
        pages, token = [], None
        while True:
            found, token = search_experiment_ids(
                views,
                query.get("view", 1),
                text,
                query.get("page_size") or 1000,
                query.get("order_by"),
                token,
            )
            pages.append([names[e] for e in found])
            if not token:
                break
        got: dict = {"pages": pages} if query.get("page_size") else {"names": pages[0]}
    except EvtrackError as exc:
        got = {"error": exc.error_code}
    assert got == mlflow_answers["exp_results"][qid]


def _evtrack_parse(fn: Any, arg: Any) -> dict:
    try:
        return {"ok": fn(arg)}
    except EvtrackError as exc:
        return {"error": exc.error_code}


@pytest.mark.parametrize("text", FILTER_CORPUS)
def test_filter_parse_matches_mlflow(text: str, mlflow_answers: dict) -> None:
    expected = mlflow_answers["filters"][text]
    got = _evtrack_parse(parse_filter, text)
    if "ok" in got:
        got["ok"] = [
            [
                c.entity_type,
                c.key,
                c.comparator,
                list(c.value) if isinstance(c.value, tuple) else c.value,
            ]
            for c in got["ok"]
        ]
    if "crash" in expected:  # MLflow fails with a non-MLflow error: evtrack must reject it cleanly
        assert got == {"error": "INVALID_PARAMETER_VALUE"}
    else:
        assert got == expected


@pytest.mark.parametrize("text", ORDER_CORPUS)
def test_order_by_parse_matches_mlflow(text: str, mlflow_answers: dict) -> None:
    expected = mlflow_answers["orders"][text]
    got = _evtrack_parse(parse_order_by, [text])
    if "ok" in got:
        (ob,) = got["ok"]
        got["ok"] = [ob.entity_type, ob.key, ob.ascending]
    assert got == expected


@pytest.mark.parametrize("text", EXPERIMENT_FILTER_CORPUS)
def test_experiment_filter_parse_matches_mlflow(text: str, mlflow_answers: dict) -> None:
    expected = mlflow_answers["exp_filters"][text]
    got = _evtrack_parse(parse_experiments_filter, text)
    if "ok" in got:
        got["ok"] = [
            [
                c.entity_type,
                c.key,
                c.comparator,
                list(c.value) if isinstance(c.value, tuple) else c.value,
            ]
            for c in got["ok"]
        ]
    assert got == expected


def test_experiment_order_by_rejects_tags() -> None:
    with pytest.raises(EvtrackError):
        parse_experiments_order_by(["tags.x"])


def test_runs_through_client(mlflow_answers: dict, tmp_path: Path) -> None:
    """The same queries through evtrack's own client."""
    import evtrack

    client_cls = evtrack.MlflowClient
    from evtrack.entities import Metric, Param, RunTag  # type: ignore[attr-defined]

    client = client_cls(tracking_uri=str(tmp_path / "store"))
    spec = build_spec()
    exp_ids = [client.create_experiment(e["name"], tags=e["tags"]) for e in spec["experiments"]]
    run_ids, names = [], {}
    for r in spec["runs"]:
        run = client.create_run(
            exp_ids[r["experiment"]],
            start_time=r["start_time"],
            tags={"mlflow.user": r["user"]},
            run_name=r["name"],
        )
        rid = run.info.run_id
        run_ids.append(rid)
        names[rid] = r["name"]
        client.log_batch(
            rid,
            metrics=[Metric(k, v, ts, s) for k, v, ts, s in r["metrics"]],
            params=[Param(k, v) for k, v in r["params"].items()],
            tags=[RunTag(k, v) for k, v in r["tags"].items()],
        )
        if r["status"] != "RUNNING":
            client.set_terminated(rid, r["status"], end_time=r["end_time"])
        if r["deleted"]:
            client.delete_run(rid)
    mismatches = {}
    for qid, query in RUN_QUERIES.items():
        if qid in ORDERED_BY_RANDOM_IDS:
            continue
        text = render(query["filter"], run_ids, exp_ids, {})
        ids = [exp_ids[i] for i in query["experiments"]]
        try:
            if query["page_size"]:
                pages, token = [], None
                while True:
                    res = client.search_runs(
                        ids, text or "", query["view"], query["page_size"], query["order_by"], token
                    )
                    pages.append([r.info.run_name for r in res])
                    token = getattr(res, "token", None)
                    if not token:
                        break
                got: dict = {"pages": pages}
            else:
                res = client.search_runs(
                    ids, text or "", query["view"], query["max_results"], query["order_by"]
                )
                got = {"names": [r.info.run_name for r in res]}
        except EvtrackError as exc:
            got = {"error": exc.error_code}
        if got != mlflow_answers["run_results"][qid]:
            mismatches[qid] = {"evtrack": got, "mlflow": mlflow_answers["run_results"][qid]}
    assert not mismatches, json.dumps(mismatches, indent=1)[:6000]
