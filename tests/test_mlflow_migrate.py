"""``evtrack import`` / ``export`` against the real mlflow (its venv), both directions.

The sources are made by stock MLflow 3 (a file store and a sqlite database with nested
runs, deleted runs, a deleted experiment, NaN/inf values, long histories, artifacts),
plus a hand-written MLflow 1.x file store. After the import, evtrack must give the same
ordered ``search_runs`` answers and metric histories as MLflow does on the source, and
a second import (or one resumed after ``kill -9``) must add nothing. Exported back (a
file store, and SQLite through ``mlflow migrate-filestore``), MLflow must read the very
answers it gave on the original source.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow_plugin_venv import plugin_python_fixture  # noqa: F401  (plugin_python)
from mlflow_venv import mlflow_python_fixture  # noqa: F401  (the mlflow_python fixture)
from pg_server import pg_server_fixture, with_driver  # noqa: F401  (the pg_server fixture)

import evtrack
from evtrack.migrate import import_mlflow

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.mlflow

MAKE_SOURCE = """
import math, os, sys, mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric
mlflow.set_tracking_uri(sys.argv[1])
client = MlflowClient()
mlflow.set_experiment("train")
for i in range(6):
    with mlflow.start_run(run_name=f"run-{i}") as run:
        mlflow.log_params({"alpha": str(i / 10), "kind": "even" if i % 2 == 0 else "odd"})
        mlflow.set_tag("group", "g%d" % (i % 3))
        t0 = 1_700_000_000_000 + i * 10_000
        for key, scale in (("loss", 1.0), ("acc", 0.5)):
            client.log_batch(run.info.run_id, metrics=[
                Metric(key, scale * (i + 1) / (s + 1), t0 + s, s) for s in range(1500)
            ])
        mlflow.log_metric("odd", float("nan") if i == 2 else (math.inf if i == 3 else i), step=0)
        with open("model.txt", "w") as f:
            f.write(f"weights {i}")
        mlflow.log_artifact("model.txt", "model")
        mlflow.log_text("note", "notes/a/b.txt")
        with mlflow.start_run(run_name=f"child-{i}", nested=True):
            mlflow.log_metric("inner", i * 2.0)
    if i == 4:
        client.delete_run(run.info.run_id)
    if i == 5:
        client.set_terminated(run.info.run_id, "FAILED")
old = client.create_experiment("old", tags={"owner": "me"})
r = client.create_run(old, run_name="in-old")
client.log_param(r.info.run_id, "p", "1")
client.set_terminated(r.info.run_id)
client.delete_experiment(old)
print("ok")
"""

SEARCH = """
import json, sys, mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType
mlflow.set_tracking_uri(sys.argv[1])
client = MlflowClient()
queries = json.loads(sys.argv[2])
exps = {e.name: e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)}
out = {"exps": exps, "answers": [], "history": {}}
for q in queries:
    runs = client.search_runs(
        [exps[n] for n in q["experiments"]], q.get("filter", ""),
        getattr(ViewType, q.get("view", "ACTIVE_ONLY")), q.get("max_results", 1000),
        q.get("order_by"),
    )
    out["answers"].append([r.info.run_id for r in runs])
everything = client.search_runs(list(exps.values()), "", ViewType.ALL)
for r in everything:
    out["history"][r.info.run_id] = {
        key: [[m.step, m.timestamp, m.value if m.value == m.value else "nan"]
              for m in client.get_metric_history(r.info.run_id, key)]
        for key in r.data.metrics
    }
    out.setdefault("runs", {})[r.info.run_id] = {
        "name": r.info.run_name, "status": r.info.status, "start": r.info.start_time,
        "end": r.info.end_time, "stage": r.info.lifecycle_stage,
        "params": r.data.params, "tags": r.data.tags, "metrics": {
            k: (v if v == v else "nan") for k, v in r.data.metrics.items()},
    }
print(json.dumps(out))
"""

QUERIES = [
    {"experiments": ["train"]},
    {"experiments": ["train"], "filter": "metrics.loss < 0.005"},
    {"experiments": ["train"], "filter": "params.kind = 'even'", "order_by": ["metrics.loss DESC"]},
    {"experiments": ["train"], "order_by": ["metrics.odd ASC", "attributes.run_name"]},
    {"experiments": ["train"], "filter": "tags.group = 'g1'", "view": "ALL"},
    {"experiments": ["train"], "view": "DELETED_ONLY"},
    {"experiments": ["train"], "filter": "attributes.status = 'FAILED'"},
    {
        "experiments": ["train"],
        "filter": "tags.`mlflow.parentRunId` != ''",
        "order_by": ["attributes.start_time"],
    },
    {
        "experiments": ["train", "old"],
        "view": "ALL",
        "order_by": ["params.alpha"],
        "max_results": 4,
    },
]


def run_in(python: Path, script: str, *args: str, cwd: Path, env: dict | None = None) -> str:
    proc = subprocess.run(
        [str(python), "-c", textwrap.dedent(script), *args],
        cwd=cwd,
        env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def sources(mlflow_python, tmp_path_factory) -> dict[str, str]:
    """The same history written by MLflow into a file store and a sqlite database."""
    base = tmp_path_factory.mktemp("mlflow-sources")
    made = {}
    for kind, uri in (
        ("file", f"file://{base}/mlruns"),
        ("sqlite", f"sqlite:///{base}/mlflow.db"),
    ):
        work = base / kind
        work.mkdir()
        run_in(mlflow_python, MAKE_SOURCE, uri, cwd=work)
        made[kind] = uri
    return made


@pytest.fixture(scope="session")
def mlflow_answers(mlflow_python, sources, tmp_path_factory) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("answers")
    return {
        kind: json.loads(run_in(mlflow_python, SEARCH, uri, json.dumps(QUERIES), cwd=work))
        for kind, uri in sources.items()
    }


def evtrack_answers(client: evtrack.MlflowClient, names: dict[str, str]) -> list[list[str]]:
    out = []
    for q in QUERIES:
        view = getattr(evtrack.ViewType, q.get("view", "ACTIVE_ONLY"))
        runs = client.search_runs(
            [names[n] for n in q["experiments"]],
            q.get("filter", ""),
            view,
            q.get("max_results", 1000),
            q.get("order_by"),
        )
        out.append([r.info.run_id for r in runs])
    return out


def nan_safe(v):
    return "nan" if v != v else v


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_import_gives_mlflows_answers(kind, sources, mlflow_answers, tmp_path, monkeypatch):
    src = sources[kind]
    if kind == "sqlite":  # MLflow wrote relative artifact paths: ./mlruns under its cwd
        monkeypatch.chdir(Path(src[len("sqlite:///") :]).parent / "sqlite")
    check_import(src, mlflow_answers[kind], tmp_path)


@pytest.fixture(scope="session")
def postgres_source(mlflow_python, pg_server, tmp_path_factory) -> tuple[str, Path]:
    """The same history written by MLflow into a PostgreSQL database: (URI, MLflow's cwd)."""
    uri = pg_server.new_database()
    work = tmp_path_factory.mktemp("mlflow-postgres")
    run_in(with_driver(mlflow_python), MAKE_SOURCE, uri, cwd=work)
    return uri, work


def test_import_from_postgresql_gives_mlflows_answers(
    postgres_source, mlflow_python, tmp_path, monkeypatch
):
    """``evtrack import postgresql://…`` of what the real mlflow wrote to a real server."""
    uri, work = postgres_source
    expected = json.loads(run_in(mlflow_python, SEARCH, uri, json.dumps(QUERIES), cwd=work))
    monkeypatch.chdir(work)  # MLflow wrote relative artifact paths: ./mlruns under its cwd
    check_import(uri, expected, tmp_path)
    from click.testing import CliRunner

    from evtrack.cli.main import main

    again = CliRunner().invoke(main, ["--tracking-uri", str(tmp_path / "ev"), "import", uri])
    assert again.exit_code == 0, again.output
    assert "Imported 0 runs (13 already complete), 0 metric points" in again.output


def check_import(src: str, expected: dict, tmp_path: Path) -> None:
    """Import ``src``; evtrack must then give MLflow's answers (``expected``) exactly."""
    report = import_mlflow(src, str(tmp_path / "ev"))
    assert report.counts["runs"] == (13, 13)
    assert report.counts["deleted runs"][0] >= 1  # run-4 (+ the one in "old" for files)
    assert report.counts["metric points"][0] == report.counts["metric points"][1] == 6 * 3001 + 6
    assert all(a == b for a, b in report.counts.values()), report.counts
    client = evtrack.MlflowClient(str(tmp_path / "ev"))
    names = {e.name: e.experiment_id for e in client.search_experiments(evtrack.ViewType.ALL)}
    assert set(names) == set(expected["exps"])
    assert client.get_experiment(names["old"]).lifecycle_stage == "deleted"
    assert client.get_experiment(names["old"]).tags == {"owner": "me"}
    assert evtrack_answers(client, names) == expected["answers"]
    for run_id, want in expected["runs"].items():
        run = client.get_run(run_id)
        got = {
            "name": run.info.run_name,
            "status": run.info.status,
            "start": run.info.start_time,
            "end": run.info.end_time,
            "stage": run.info.lifecycle_stage,
            "params": run.data.params,
            "tags": run.data.tags,
            "metrics": {k: nan_safe(v) for k, v in run.data.metrics.items()},
        }
        assert got == want, run_id
        for key, history in expected["history"][run_id].items():
            mine = [
                [m.step, m.timestamp, nan_safe(m.value)]
                for m in client.get_metric_history(run_id, key)
            ]
            assert mine == history, (run_id, key)
    train = client.search_runs([names["train"]], "attributes.run_name = 'run-0'")[0]
    assert [f.path for f in client.list_artifacts(train.info.run_id, "model")] == [
        "model/model.txt"
    ]
    path = client.download_artifacts(train.info.run_id, "notes/a/b.txt", str(tmp_path / "dl"))
    assert Path(path).read_text() == "note"


def count_events(uri: str) -> int:
    return evtrack.MlflowClient(uri).sql("select count(*) from events").fetchall()[0][0]


def test_importing_twice_adds_nothing(sources, tmp_path):
    dest = str(tmp_path / "ev")
    first = import_mlflow(sources["file"], dest)
    before = count_events(dest)
    again = import_mlflow(sources["file"], dest)
    assert again.runs_imported == 0 and again.runs_skipped == first.runs_imported == 13
    assert again.points_written == 0
    assert count_events(dest) == before


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_an_import_killed_midway_resumes_exactly(kind, sources, tmp_path, monkeypatch):
    dest = tmp_path / "ev"
    if kind == "sqlite":  # MLflow wrote relative artifact paths: ./mlruns under its cwd
        monkeypatch.chdir(Path(sources[kind][len("sqlite:///") :]).parent / "sqlite")
    script = (
        "import sys; from evtrack.migrate import import_mlflow; "
        "import_mlflow(sys.argv[1], sys.argv[2])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, sources[kind], str(dest)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    runs_dir = dest / "runs"
    while proc.poll() is None and len(list(runs_dir.glob("*.json"))) < 4:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    report = import_mlflow(sources[kind], str(dest))
    assert all(a == b for a, b in report.counts.values()), report.counts
    if killed:
        assert report.runs_imported > 0
    # every metric key exactly once: no point written twice by the resumed import
    dup = (
        evtrack.MlflowClient(str(dest))
        .sql(
            "select count(*) from (select run_id, key, step, timestamp, count(*) n "
            "from metrics group by all having n > 1)"
        )
        .fetchall()[0][0]
    )
    assert dup == 0


def test_a_damaged_history_stops_the_import_with_a_clear_error(sources, tmp_path, monkeypatch):
    """A metric row MLflow's schema would not hold (text in ``value``) in the third run:
    the import stops with the run named and what to fix, the runs before it stay, no
    reading thread is left behind, and once the row is fixed the import completes."""
    import shutil
    import sqlite3
    import threading

    from evtrack.errors import InvalidParameterValue

    original = Path(sources["sqlite"][len("sqlite:///") :])
    monkeypatch.chdir(original.parent / "sqlite")
    db = tmp_path / "mlflow.db"
    shutil.copy(original, db)
    con = sqlite3.connect(db)
    order = "select run_uuid from runs where name like 'run-%' order by start_time"
    bad = con.execute(order + " limit 1 offset 2").fetchone()[0]
    row = con.execute(
        "select rowid, value from metrics where run_uuid = ? and key = 'loss' and step = 700",
        (bad,),
    ).fetchone()
    con.execute("update metrics set value = 'oops' where rowid = ?", (row[0],))
    con.commit()
    dest = str(tmp_path / "ev")
    with pytest.raises(InvalidParameterValue, match=f"run '{bad}'.*metrics table"):
        import_mlflow(f"sqlite:///{db}", dest, artifacts=False)
    assert not [t for t in threading.enumerate() if t.name.startswith("evtrack-import")]
    have = {r[0] for r in evtrack.MlflowClient(dest).sql("select run_id from runs").fetchall()}
    first_two = {r[0] for r in con.execute(order + " limit 2")}  # run-0, run-1
    assert first_two <= have and bad not in have
    con.execute("update metrics set value = ? where rowid = ?", (row[1], row[0]))
    con.commit()
    con.close()
    report = import_mlflow(f"sqlite:///{db}", dest, artifacts=False)
    assert all(a == b for a, b in report.counts.values()), report.counts
    assert report.runs_skipped >= 2


def write_mlflow1_store(root: Path) -> None:
    """A file store as MLflow 1.x wrote it (the tutorial's layout): relative artifact
    locations, ``run_uuid``, metric lines without a step, integer ids."""
    exp = root / "mlruns" / "0"
    run = exp / "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    for sub in ("params", "metrics", "tags", "artifacts/model"):
        (run / sub).mkdir(parents=True)
    (exp / "meta.yaml").write_text(
        "artifact_location: ./mlruns/0\nexperiment_id: '0'\nlifecycle_stage: active\n"
        "name: Default\n"
    )
    (run / "meta.yaml").write_text(
        "artifact_uri: ./mlruns/0/a1b2c3d4e5f60718293a4b5c6d7e8f90/artifacts\n"
        "end_time: 1563393612542\nentry_point_name: ''\nexperiment_id: '0'\n"
        "lifecycle_stage: active\nname: ''\nrun_id: a1b2c3d4e5f60718293a4b5c6d7e8f90\n"
        "run_uuid: a1b2c3d4e5f60718293a4b5c6d7e8f90\nsource_name: ''\nsource_type: 4\n"
        "source_version: ''\nstart_time: 1563393609470\nstatus: 3\ntags: []\nuser_id: alice\n"
    )
    (run / "params" / "alpha").write_text("0.5")
    (run / "params" / "l1_ratio").write_text("0.1")
    (run / "metrics" / "rmse").write_text("1563393612526 0.79\n1563393612530 0.75\n")
    (run / "metrics" / "r2").write_text("1563393612528 0.10 3\n")
    (run / "tags" / "mlflow.source.name").write_text("train.py")
    (run / "tags" / "mlflow.user").write_text("alice")
    (run / "artifacts" / "model" / "MLmodel").write_text("flavors: {}\n")


def test_mlflow_1x_file_store(tmp_path, monkeypatch):
    write_mlflow1_store(tmp_path)
    monkeypatch.chdir(tmp_path / "mlruns")  # relative artifact paths resolve via the store's parent
    report = import_mlflow(str(tmp_path / "mlruns"), str(tmp_path / "ev"))
    assert report.counts["runs"] == (1, 1) and report.artifacts_copied == 1
    client = evtrack.MlflowClient(str(tmp_path / "ev"))
    run = client.get_run("a1b2c3d4e5f60718293a4b5c6d7e8f90")
    assert run.info.experiment_id == "0"
    assert (run.info.status, run.info.start_time, run.info.end_time, run.info.user_id) == (
        "FINISHED",
        1563393609470,
        1563393612542,
        "alice",
    )
    assert run.data.params == {"alpha": "0.5", "l1_ratio": "0.1"}
    assert [
        (m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, "rmse")
    ] == [
        (0, 1563393612526, 0.79),
        (0, 1563393612530, 0.75),
    ]
    assert run.data.metrics == {"rmse": 0.75, "r2": 0.10}
    assert [f.path for f in client.list_artifacts(run.info.run_id, "model")] == ["model/MLmodel"]


def test_bad_sources_get_clear_errors(tmp_path):
    from evtrack.errors import InvalidParameterValue, ResourceDoesNotExist

    with pytest.raises(InvalidParameterValue, match="not a folder"):
        import_mlflow(str(tmp_path / "nowhere"), str(tmp_path / "ev"))
    with pytest.raises(InvalidParameterValue, match="no such file"):
        import_mlflow(f"sqlite:///{tmp_path}/missing.db", str(tmp_path / "ev"))
    assert not (tmp_path / "missing.db").exists()
    write_mlflow1_store(tmp_path)
    with pytest.raises(ResourceDoesNotExist, match="No experiment named nope"):
        import_mlflow(str(tmp_path / "mlruns"), str(tmp_path / "ev"), ["nope"])


# -- export: evtrack -> MLflow, read back by MLflow itself ----------------------------------


@pytest.fixture(scope="session")
def imported(sources, tmp_path_factory) -> str:
    dest = str(tmp_path_factory.mktemp("imported") / "ev")
    import_mlflow(sources["file"], dest)
    return dest


def test_export_to_a_file_store_mlflow_reads(imported, mlflow_python, mlflow_answers, tmp_path):
    from evtrack.migrate import export_mlflow

    report = export_mlflow(str(tmp_path / "mlruns"), imported)
    assert (report.experiments, report.runs) == (3, 13)
    got = json.loads(
        run_in(
            mlflow_python, SEARCH, f"file://{tmp_path}/mlruns", json.dumps(QUERIES), cwd=tmp_path
        )
    )
    expected = mlflow_answers["file"]
    assert got["answers"] == expected["answers"]
    assert got["runs"] == expected["runs"]
    assert got["history"] == expected["history"]


def test_export_to_sqlite_through_mlflow(
    imported, plugin_python, mlflow_python, mlflow_answers, tmp_path
):
    proc = subprocess.run(
        [
            str(plugin_python),
            "-m",
            "evtrack.cli",
            "--tracking-uri",
            imported,
            "export",
            "--to",
            f"sqlite:///{tmp_path}/out.db",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "13 runs" in proc.stdout
    got = json.loads(
        run_in(
            mlflow_python, SEARCH, f"sqlite:///{tmp_path}/out.db", json.dumps(QUERIES), cwd=tmp_path
        )
    )
    # MLflow's SQL stores keep ±inf as ±1.797e308 (its own rule): expect exactly that.
    expected = json.loads(
        json.dumps(mlflow_answers["file"]).replace("Infinity", "1.7976931348623157e+308")
    )
    assert got["answers"] == expected["answers"]
    assert got["runs"] == expected["runs"]
    assert got["history"] == expected["history"]
    train_run = next(r for r, v in got["runs"].items() if v["name"] == "run-0")
    art = tmp_path / "mlartifacts"
    assert [p.read_text() for p in art.rglob("model.txt") if train_run in str(p)] == ["weights 0"]


def test_export_refuses_what_it_cannot_write(imported, tmp_path):
    from evtrack.errors import InvalidParameterValue
    from evtrack.migrate import export_mlflow

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("1")
    with pytest.raises(InvalidParameterValue, match="not empty"):
        export_mlflow(str(tmp_path / "full"), imported)
    with pytest.raises(InvalidParameterValue, match="only SQLite"):
        export_mlflow("postgresql://u@localhost/db", imported)


# -- import from an MLflow tracking server over HTTP ----------------------------------------


def test_import_from_an_mlflow_server(sources, mlflow_python, mlflow_answers, tmp_path):
    from evtrack.server.testing import free_port

    db = Path(sources["sqlite"][len("sqlite:///") :])
    port = free_port()
    with open(tmp_path / "server.log", "ab") as log:
        server = subprocess.Popen(
            [
                str(mlflow_python),
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                sources["sqlite"],
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=db.parent / "sqlite",  # the runs' relative artifact paths resolve here
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "server.log"
                ).read_text()[-2000:]
                time.sleep(0.5)
        report = import_mlflow(url, str(tmp_path / "ev"))
        again = import_mlflow(url, str(tmp_path / "ev"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    assert all(a == b for a, b in report.counts.values()), report.counts
    assert report.counts["runs"] == (13, 13) and report.artifacts_copied == 12
    assert again.runs_imported == 0 and again.points_written == 0
    client = evtrack.MlflowClient(str(tmp_path / "ev"))
    names = {e.name: e.experiment_id for e in client.search_experiments(evtrack.ViewType.ALL)}
    expected = mlflow_answers["sqlite"]
    assert evtrack_answers(client, names) == expected["answers"]
    for run_id, history in expected["history"].items():
        for key, points in history.items():
            mine = [
                [m.step, m.timestamp, nan_safe(m.value)]
                for m in client.get_metric_history(run_id, key)
            ]
            assert mine == points


def test_a_run_claimed_by_a_killed_import_is_finished(sources, tmp_path):
    """The crash window between a run id's claim and its first flushed event: simulated
    by making the claim by hand, as the killed import would have left it."""
    from evtrack.store.log.layout import get_store

    dest = str(tmp_path / "ev")
    import_mlflow(sources["file"], dest, ["old"])  # creates the evtrack experiments
    client = evtrack.MlflowClient(dest)
    train = client.create_experiment("train")
    run_id = next(r for r, name in _source_runs(sources["file"]).items() if name == "run-1")
    get_store(dest).claim_run_id(run_id, train)
    report = import_mlflow(sources["file"], dest)
    assert all(a == b for a, b in report.counts.values()), report.counts
    assert client.get_run(run_id).info.run_name == "run-1"
    assert client.get_run(run_id).info.status == "FINISHED"


def _source_runs(uri: str) -> dict[str, str]:
    from evtrack.migrate.source import open_source

    src = open_source(uri)
    return {r.run_id: r.run_name for e in src.experiments() for r in src.runs(e.experiment_id)}
