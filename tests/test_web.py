"""The web view through Flask's test client: every page's JSON twin, 405 on writes,
escaping, artifact safety, live versions, and the downsampling and summary helpers.

The browser end of the same pages is in ``test_browser.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from test_web_seed import XSS, Demo, seed_demo

import evtrack
from evtrack.tracking.client import MlflowClient
from evtrack.web import blueprint, create_app, register
from evtrack.web.downsample import SeriesIndex, m4
from evtrack.web.formatting import fmt_duration, fmt_size, fmt_value

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return seed_demo(str(tmp_path_factory.mktemp("web") / "store"))


@pytest.fixture(scope="module")
def app(demo: Demo) -> Flask:
    app = create_app(demo.uri, min_interval=0)
    app.testing = True
    return app


@pytest.fixture
def web(app: Flask):
    return app.test_client()


def get_json(web, url: str, status: int = 200) -> dict:
    resp = web.get(url)
    assert resp.status_code == status, resp.data[:500]
    assert resp.mimetype == "application/json"
    return json.loads(resp.data)


def files_of(root: str) -> dict[str, float]:
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            out[path] = os.stat(path).st_mtime
    return out


# -- experiments ------------------------------------------------------------------------------


def test_experiments_page_and_twin(web, demo: Demo) -> None:
    html = web.get("/")
    assert html.status_code == 200 and html.mimetype == "text/html"
    assert b"wine-quality" in html.data and b"quickstart" in html.data
    data = get_json(web, "/?format=json")
    by_name = {e["name"]: e for e in data["experiments"]}
    wine = by_name["wine-quality"]
    assert wine["experiment_id"] == demo.wine
    assert wine["runs"] == 10 and wine["running"] == 1 and wine["deleted_runs"] == 0
    assert wine["last_activity"] >= wine["creation_time"]
    assert wine["description"] == "ElasticNet on the UCI wine data"
    assert by_name["quickstart"]["runs"] == 3


def test_experiments_search_and_sort(web) -> None:
    names = lambda url: [e["name"] for e in get_json(web, url)["experiments"]]  # noqa: E731
    assert names("/?format=json&q=WINE") == ["wine-quality"]
    assert names("/?format=json&q=name LIKE 'quick%25'") == ["quickstart"]
    assert names("/?format=json&sort=name") == ["Default", "quickstart", "wine-quality"]
    assert names("/?format=json&sort=-runs")[0] == "wine-quality"
    bad = get_json(web, "/?format=json&q=name LIKE", status=400)
    assert bad["error"] and bad["experiments"] == []
    page = web.get("/?q=name %3D%3D '<b>'")
    assert page.status_code == 400 and b'role="alert"' in page.data and b"<b>" not in page.data


# -- runs table ---------------------------------------------------------------------------------


def test_runs_table_folds_nested_runs(web, demo: Demo) -> None:
    data = get_json(web, f"/experiments/{demo.wine}?format=json")
    names = [r["run_name"] for r in data["rows"]]
    assert data["total"] == 6 and len(names) == 6  # 4 children folded under "sweep"
    sweep = next(r for r in data["rows"] if r["run_name"] == "sweep")
    assert sweep["children"] == 4 and sweep["parent_id"] is None
    kids = get_json(web, f"/experiments/{demo.wine}?format=json&parent={demo.runs['sweep']}")
    assert kids["total"] == 4
    assert {r["parent_id"] for r in kids["rows"]} == {demo.runs["sweep"]}
    # a filter that matches a child but not its parent shows the child at the top
    only = get_json(web, f"/experiments/{demo.wine}?format=json&filter=params.alpha = '1.0'")
    assert [r["run_name"] for r in only["rows"]] == ["en-a1.0-l0.9"]


def test_runs_table_sorts_by_any_column(web, demo: Demo) -> None:
    base = f"/experiments/{demo.wine}?format=json&view=all"

    def names(sort: str, **extra: str) -> list[str]:
        extra_q = "".join(f"&{k}={v}" for k, v in extra.items())
        return [r["run_name"] for r in get_json(web, f"{base}&sort={sort}{extra_q}")["rows"]]

    by_rmse = names("metrics.rmse")
    assert by_rmse[:3] == ["gbm-1", "ridge-2", "random-forest-0"]
    assert by_rmse[-1] == "sweep"  # no rmse: missing values last in both directions
    assert names("-metrics.rmse")[-1] == "sweep"
    # params sort as numbers when they are numbers (100 < 200 < 300, not "100" < "1000")
    assert names("params.n_estimators")[:3] == ["random-forest-0", "gbm-1", "ridge-2"]
    assert names("-params.n_estimators")[:3] == ["ridge-2", "gbm-1", "random-forest-0"]
    assert names("name")[0] == XSS["name"]  # "<" sorts first
    assert names("-name")[0] == "sweep"
    assert names("-start_time")[0] == "live" and names("start_time")[0] == "sweep"
    assert names("status")[0] == "ridge-2" and names("-status")[0] == "live"
    assert names("-duration")[:2] == ["sweep", "ridge-2"]  # ties: newest first
    # text: "<script>" < "tabular" < "vision", then runs without the tag
    assert names("tags.team") == [
        XSS["name"],
        "ridge-2",
        "random-forest-0",
        "gbm-1",
        "live",
        "sweep",
    ]
    bad = get_json(web, f"{base}&sort=nonsense.x", status=400)
    assert bad["error_code"] == "INVALID_PARAMETER_VALUE"


def test_runs_table_filter_and_inline_error(web, demo: Demo) -> None:
    url = f"/experiments/{demo.wine}"
    data = get_json(web, f"{url}?format=json&filter=metrics.rmse < 0.6 and params.model != 'x'")
    assert {r["run_name"] for r in data["rows"]} == {"gbm-1", "ridge-2", "random-forest-0"}
    assert data["error"] is None
    bad = get_json(web, f"{url}?format=json&filter=metrics.rmse <<< 1", status=400)
    assert bad["error"] and bad["rows"] == [] and bad["total"] == 0
    page = web.get(f"{url}?filter=tags.x %3D '<script>alert(1)</script>' garbage")
    assert page.status_code == 400
    assert b'id="filter-error"' in page.data and b'aria-invalid="true"' in page.data
    assert b"<script>alert(1)" not in page.data and b"&lt;script&gt;alert(1)" in page.data


def test_runs_table_columns_paging_and_selection(web, demo: Demo) -> None:
    url = f"/experiments/{demo.wine}?format=json&col=params.alpha&col=metrics.r2&col=tags.team"
    data = get_json(web, url + f"&parent={demo.runs['sweep']}&sort=params.alpha")
    assert data["query"]["columns"] == ["params.alpha", "metrics.r2", "tags.team"]
    first = data["rows"][0]
    assert first["values"]["params.alpha"] == "0.1" and isinstance(
        first["values"]["metrics.r2"], float
    )
    assert set(data["available"]) == {"params", "metrics", "tags"}
    assert "rmse" in data["available"]["metrics"]
    paged = get_json(web, f"/experiments/{demo.wine}?format=json&per_page=4&page=2")
    assert paged["page"] == 2 and paged["pages"] == 2 and len(paged["rows"]) == 2
    sel = f"{demo.runs['gbm']},{demo.runs['ridge']}"
    data = get_json(web, f"/experiments/{demo.wine}?format=json&sel={sel}")
    assert data["query"]["selected"] == [demo.runs["gbm"], demo.runs["ridge"]]
    html = web.get(f"/experiments/{demo.wine}?sel={sel}").data.decode()
    assert html.count("checked>") >= 2 and "Compare" in html
    assert get_json(web, f"/experiments/{demo.wine}?format=json&per_page=0", 400)
    assert (
        get_json(web, "/experiments/404?format=json", 404)["error_code"]
        == "RESOURCE_DOES_NOT_EXIST"
    )


def test_runs_csv(web, demo: Demo) -> None:
    resp = web.get(f"/experiments/{demo.wine}/runs.csv?view=all")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(resp.data.decode())))
    header, body = rows[0], rows[1:]
    assert header[:8] == [
        "run_id", "run_name", "status", "user_id", "start_time", "end_time", "duration_s", "parent_run_id",
    ]  # fmt: skip
    assert "metrics.rmse" in header and "params.alpha" in header
    assert len(body) == 10  # nested runs included
    xss = next(r for r in body if r[0] == demo.runs["xss"])
    model = xss[header.index("params.model")]
    assert model == XSS["tag"]  # text as it is: a CSV is not HTML
    chosen = web.get(
        f"/experiments/{demo.wine}/runs.csv?col=metrics.rmse&filter=metrics.rmse < 0.6"
    )
    rows = list(csv.reader(io.StringIO(chosen.data.decode())))
    assert rows[0][-1] == "metrics.rmse" and len(rows) == 4
    assert web.get(f"/experiments/{demo.wine}/runs.csv?filter=bad bad").status_code == 400


def test_csv_cells_cannot_become_formulas() -> None:
    from evtrack.web.table import _csv_cell

    assert _csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert _csv_cell("-1.5") == "-1.5" and _csv_cell(-1.5) == -1.5 and _csv_cell("a=b") == "a=b"


# -- run page ----------------------------------------------------------------------------------


def test_run_page_and_twin(web, demo: Demo) -> None:
    rid = demo.runs["sweep"]
    data = get_json(web, f"/runs/{rid}?format=json")
    assert data["run"]["run_name"] == "sweep" and data["run"]["status"] == "FINISHED"
    assert data["run"]["duration_ms"] == 200_000
    assert data["description"].startswith("Grid over alpha")
    assert {c["run_name"] for c in data["children"]} == {
        "en-a0.1-l0.1", "en-a0.1-l0.5", "en-a0.5-l0.5", "en-a1.0-l0.9",
    }  # fmt: skip
    assert data["params"] == [{"key": "search", "value": "grid"}]
    child = get_json(web, f"/runs/{demo.runs['child-0']}?format=json")
    assert child["parent"]["run_id"] == rid
    assert {m["key"] for m in child["metrics"]} == {"rmse", "r2"}
    rmse = next(m for m in child["metrics"] if m["key"] == "rmse")
    assert rmse["step"] == 200
    html = web.get(f"/runs/{rid}").data.decode()
    assert "Grid over alpha" in html and 'data-key="best_rmse"' in html
    assert get_json(web, "/runs/ffffffffffffffffffffffffffffffff?format=json", 404)
    assert web.get("/runs/..%2F..%2Fetc?format=json").status_code in (400, 404)
    settings = get_json(web, f"/runs/{rid}?format=json&x=wall&log=1&smooth=0.5")["charts"]
    assert settings == {"keys": ["best_rmse"], "x": "wall", "log": True, "smooth": 0.5}
    assert get_json(web, f"/runs/{rid}?format=json&x=nope", 400)


def test_values_are_escaped_everywhere(web, demo: Demo) -> None:
    rid = demo.runs["xss"]
    pages = [
        f"/runs/{rid}",
        f"/experiments/{demo.wine}?col=params.payload&col=tags.team&col=params.model",
        f"/compare?runs={rid},{demo.runs['gbm']}",
        f"/runs/{rid}/artifacts",
        f"/runs/{demo.runs['random-forest']}/artifacts?path=notes.txt",
        "/",
    ]
    for url in pages:
        resp = web.get(url)
        assert resp.status_code == 200, url
        html = resp.data.decode()
        assert (
            "Content-Security-Policy" in resp.headers
            and "script-src 'self'" in resp.headers["Content-Security-Policy"]
        )
        for raw in ("<img src=x onerror", "<script>window", "<svg onload"):
            assert raw not in html, (url, raw)
    page = web.get(f"/runs/{rid}").data.decode()
    assert (
        "&lt;img src=x onerror=" in page and "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page
    )
    # the page-data JSON island is escaped too (no "</script>" can close it)
    assert "</script><" not in page.split('id="page-data">', 1)[1].split("</script>", 1)[0]


# -- charts --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_run(demo: Demo) -> str:
    """A run with 200,000 points of one metric, one spike, a NaN and an infinity."""
    client = MlflowClient(demo.uri)
    run = client.create_run(demo.quick, run_name="long", start_time=1_714_560_000_000)
    n = 200_000
    values = np.sin(np.arange(n) / 5000.0)
    values[123_457] = 40.0
    values[10] = np.nan
    values[20] = np.inf
    client.log_metric_series(
        run.info.run_id, "loss", values, np.arange(n), 1_714_560_000_000 + np.arange(n) * 100
    )
    client.set_terminated(run.info.run_id)
    client.flush()
    return run.info.run_id


def test_metric_series_downsampled_keeps_spikes(web, long_run: str) -> None:
    url = f"/-/runs/{long_run}/metric?key=loss&width=500"
    data = get_json(web, url)
    assert data["total"] == 200_000 and data["downsampled"] is True
    assert len(data["x"]) == len(data["y"]) <= 4 * 500 + 8
    assert max(y for y in data["y"] if y is not None) == 40.0  # the spike survives
    assert data["x"][0] == 0 and data["x"][-1] == 199_999
    assert data["x"] == sorted(data["x"])
    zoom = get_json(web, url + "&lo=123000&hi=124000")
    assert zoom["in_range"] <= 1003 and zoom["downsampled"] is False
    assert 40.0 in zoom["y"] and zoom["x"][0] <= 123_000 and zoom["x"][-1] >= 124_000
    near = get_json(web, url + "&lo=0&hi=100")
    assert near["y"][10] is None and near["nonfinite"] == {"10": "NaN", "20": "Infinity"}
    rel = get_json(web, f"/-/runs/{long_run}/metric?key=loss&width=500&x=relative")
    assert rel["x"][0] == 0 and abs(rel["x"][-1] - 19_999.9) < 1e-6 and rel["step"][-1] == 199_999
    wall = get_json(
        web, f"/-/runs/{long_run}/metric?key=loss&width=500&x=wall&lo=1714560000&hi=1714560001"
    )
    assert all(1714559999.9 <= x <= 1714560001.1 for x in wall["x"])
    missing = get_json(web, f"/-/runs/{long_run}/metric?key=nope")
    assert missing["total"] == 0 and missing["x"] == []
    assert get_json(web, f"/-/runs/{long_run}/metric?key=loss&x=bad", 400)
    assert get_json(web, f"/-/runs/{long_run}/metric?key=loss&lo=abc", 400)
    assert get_json(web, f"/-/runs/{long_run}/metric", 400)


def test_m4_matches_every_pixel_column() -> None:
    rng = np.random.default_rng(3)
    for n in (10, 999, 50_000, 333_333):
        x = np.cumsum(rng.integers(1, 4, n)).astype(float)
        y = rng.normal(size=n).cumsum()
        y[rng.integers(0, n, 3)] = 1e3
        width = 300
        keep = m4(x, y, x[0], x[-1], width)
        index = SeriesIndex(y)
        cand = index.candidates(0, n, width)
        assert np.all(np.diff(cand) > 0) and cand[0] == 0 and cand[-1] == n - 1
        # exact per-pixel extremes, from all points, equal those from the candidates
        col = np.clip(((x - x[0]) * width / (x[-1] - x[0])).astype(int), 0, width - 1)
        for pos in (keep, cand):
            assert y[pos].max() == y.max() and y[pos].min() == y.min()
        for c in rng.integers(0, width, 40):
            every = y[col == c]
            if every.size:
                mine = y[cand][col[cand] == c]
                # a block straddling a pixel edge may give its extreme to the neighbour
                # column; the drawn vertical extent over both columns is still exact
                both = y[cand][(col[cand] >= c - 1) & (col[cand] <= c + 1)]
                assert mine.size == 0 or both.max() >= every.max()
        if n <= 4 * width:
            assert len(keep) == n


def test_summary_equals_views_over_all_events(demo: Demo, long_run: str) -> None:
    from evtrack.store.log.layout import get_store
    from evtrack.store.log.views import connect, load_events
    from evtrack.web.summary import summarize

    store = get_store(demo.uri)
    for experiment_id in (demo.wine, demo.quick):
        events = load_events(store, [experiment_id])
        summary = summarize(events)
        assert summary.table.num_rows < events.num_rows or experiment_id == demo.wine
        assert summary.max_time == max(events["time"].to_pylist())
        for view in ("runs", "params", "tags", "latest_metrics", "artifacts", "experiments"):
            full = connect(events).execute(f"select * from {view} order by all").fetchall()
            small = connect(summary.table).execute(f"select * from {view} order by all").fetchall()
            assert repr(full) == repr(small), view  # repr: NaN == NaN


# -- compare ------------------------------------------------------------------------------------


def test_compare_twin(web, demo: Demo) -> None:
    ids = [demo.runs[k] for k in ("child-0", "child-1", "child-2", "random-forest")]
    data = get_json(
        web, f"/compare?format=json&runs={','.join(ids)},ffffffffffffffffffffffffffffffff"
    )
    assert [r["run"]["run_id"] for r in data["runs"]] == ids
    assert data["missing"] == ["ffffffffffffffffffffffffffffffff"]
    params = {r["key"]: r for r in data["params"]}
    assert params["alpha"]["differs"] and params["alpha"]["values"] == ["0.1", "0.1", "0.5", None]
    assert not next(r for r in data["metrics"] if r["key"] == "rmse")["values"].count(None)
    assert data["charts"]["keys"] == ["mae", "r2", "rmse"]
    plot = data["parallel"]["plot"]
    assert data["parallel"]["metric"] == "r2"  # the first metric all of the runs have
    assert [a["key"] for a in plot["axes"]][-1] == "r2" and len(plot["lines"]) == 4
    chosen = get_json(web, f"/compare?format=json&runs={','.join(ids)}&pc_metric=rmse")
    assert chosen["parallel"]["plot"]["axes"][-1]["key"] == "rmse"
    assert all(len(line["points"].split()) == len(plot["axes"]) for line in plot["lines"])
    html = web.get(f"/compare?runs={','.join(ids)}").data.decode()
    assert "<svg" in html and html.count('class="pc-line"') == 4 and 'class="differs"' in html
    assert get_json(web, "/compare?format=json")["runs"] == []
    assert get_json(
        web, "/compare?format=json&runs=" + ",".join(["a"] * 2 + [f"r{i}" for i in range(120)]), 400
    )


# -- artifacts ------------------------------------------------------------------------------------


def test_artifact_tree_and_previews(web, demo: Demo) -> None:
    rid = demo.runs["random-forest"]
    data = get_json(web, f"/runs/{rid}/artifacts?format=json")
    top = {n["name"]: n for n in data["tree"]}
    assert {"model", "plots", "data", "logs", "metrics.json", "notes.txt", "report.html"} <= set(
        top
    )
    assert top["model"]["is_dir"] and {c["name"] for c in top["model"]["children"]} >= {
        "MLmodel",
        "conda.yaml",
    }

    def preview(path: str) -> dict:
        return get_json(web, f"/runs/{rid}/artifacts?format=json&path={path}")["preview"]

    assert (
        preview("metrics.json")["kind"] == "json"
        and '\n  "rmse": 0.61' in preview("metrics.json")["text"]
    )
    csv_p = preview("data/sample.csv")
    assert (
        csv_p["kind"] == "csv"
        and csv_p["rows"][0][0] == "fixed acidity"
        and len(csv_p["rows"]) == 4
    )
    model = preview("model/MLmodel")
    assert model["kind"] == "mlmodel"
    assert [f["name"] for f in model["model"]["flavors"]] == ["python_function", "sklearn"]
    assert model["model"]["inputs"] == ["alcohol: double", "pH: double"] and model["model"][
        "outputs"
    ] == ["double"]
    assert preview("model/conda.yaml")["kind"] == "yaml"
    assert preview("plots/residuals.png")["kind"] == "image"
    assert preview("plots/evil.svg")["kind"] == "image"
    assert preview("report.html")["kind"] == "html" and "text" not in preview("report.html")
    assert preview("model/model.pkl")["kind"] == "binary"
    assert preview("logs/train.log")["text"].startswith("epoch 1")
    missing = get_json(web, f"/runs/{rid}/artifacts?format=json&path=nope.txt", 404)
    assert missing["error"]
    assert get_json(web, f"/runs/{rid}/artifacts?format=json&path=../../../etc/passwd", 400)
    html = web.get(f"/runs/{rid}/artifacts?path=report.html").data.decode()
    assert "not shown here" in html and "<script>window" not in html


def test_run_pages_of_an_experiment_without_its_events(tmp_path: Path) -> None:
    """A run whose experiment's own events are gone (a damaged or partly copied store)
    still shows: the run page, compare and the artifacts page (which used to crash with
    a TypeError, a 500) name no experiment; the experiment's page is a 404."""
    uri = str(tmp_path / "orphan")
    client = MlflowClient(uri)
    exp = client.create_experiment("orphaned")
    run_id = client.create_run(exp).info.run_id
    client.log_param(run_id, "alpha", "0.5")
    client.flush()
    events = tmp_path / "orphan" / "experiments" / exp / "events"
    experiment_segments = list(events.glob("_.*"))  # scope "_": the experiment's events
    assert experiment_segments
    for path in experiment_segments:
        path.unlink()
    web = create_app(uri, min_interval=0).test_client()
    assert get_json(web, f"/runs/{run_id}?format=json")["experiment"]["name"] is None
    data = get_json(web, f"/runs/{run_id}/artifacts?format=json")
    assert data["experiment"] == {"experiment_id": exp, "name": None}
    assert data["tree"] == []
    assert web.get(f"/runs/{run_id}/artifacts").status_code == 200
    assert (
        get_json(web, f"/compare?runs={run_id}&format=json")["runs"][0]["experiment_name"] is None
    )
    get_json(web, f"/experiments/{exp}?format=json", 404)
    assert exp not in {e["experiment_id"] for e in get_json(web, "/?format=json")["experiments"]}


def test_raw_artifacts_cannot_run_script(web, demo: Demo) -> None:
    rid = demo.runs["random-forest"]

    def raw(path: str, download: bool = False):
        resp = web.get(
            f"/runs/{rid}/artifacts/raw?path={path}" + ("&download=1" if download else "")
        )
        assert resp.status_code == 200, path
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"].startswith("sandbox")
        return resp

    html = raw("report.html")
    assert html.mimetype == "application/octet-stream"
    assert html.headers["Content-Disposition"].startswith("attachment")
    svg = raw("plots/evil.svg")
    assert svg.mimetype == "image/svg+xml" and svg.headers["Content-Disposition"].startswith(
        "attachment"
    )
    png = raw("plots/residuals.png")
    assert png.mimetype == "image/png" and "Content-Disposition" not in png.headers
    assert png.data.startswith(b"\x89PNG")
    txt = raw("notes.txt")
    assert txt.headers["Content-Type"] == "text/plain; charset=utf-8" and txt.data.startswith(
        b"<script>"
    )
    down = raw("metrics.json", download=True)
    assert 'filename="metrics.json"' in down.headers["Content-Disposition"]
    assert json.loads(down.data)["rmse"] == 0.61
    assert web.get(f"/runs/{rid}/artifacts/raw?path=model").status_code == 400
    assert web.get(f"/runs/{rid}/artifacts/raw?path=../x").status_code == 400
    assert web.get(f"/runs/{rid}/artifacts/raw?path=nope").status_code == 404
    assert web.get(f"/runs/{rid}/artifacts/raw").status_code == 400


# -- read-only ------------------------------------------------------------------------------------


def test_every_route_refuses_writes(app: Flask, web, demo: Demo) -> None:
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("evtrack_web.")]
    assert len(rules) >= 10
    values = {
        "experiment_id": demo.wine,
        "run_id": demo.runs["gbm"],
        "filename": "web.css",
    }
    for rule in rules:
        url = rule.build(values, append_unknown=False)[1]
        with web.get(url) as resp:
            assert resp.status_code in (200, 400), url
        for method in WRITE_METHODS:
            with web.open(url, method=method) as resp:
                assert resp.status_code == 405, (method, url)
                assert resp.headers["Allow"] == "GET, HEAD"
    # URLs no route matches are refused too, before any routing
    assert web.post("/no/such/page").status_code == 405
    assert web.head("/").status_code == 200


def test_browsing_writes_nothing(demo: Demo, tmp_path: Path) -> None:
    before = files_of(demo.uri)
    app = create_app(demo.uri, min_interval=0)
    web = app.test_client()
    for url in [
        "/",
        f"/experiments/{demo.wine}",
        f"/runs/{demo.runs['gbm']}",
        f"/runs/{demo.runs['gbm']}/artifacts",
    ]:
        assert web.get(url).status_code == 200
    assert files_of(demo.uri) == before
    empty = tmp_path / "nothing-here"
    app = create_app(str(empty), min_interval=0)
    resp = app.test_client().get("/")
    assert resp.status_code == 200 and b"No experiments" in resp.data
    assert not empty.exists()  # not even the store's marker file


def test_mounts_in_another_app(demo: Demo) -> None:
    host = Flask("host")

    @host.post("/api/2.0/mlflow/runs/create")
    def create():
        return {"ok": True}

    register(host, MlflowClient(demo.uri), url_prefix="/ui", min_interval=0)
    web = host.test_client()
    assert web.post("/api/2.0/mlflow/runs/create").status_code == 200  # host routes untouched
    assert web.get("/ui/").status_code == 200
    assert web.post("/ui/").status_code == 405
    page = web.get(f"/ui/experiments/{demo.wine}").data.decode()
    assert "/ui/static/evtrack-web/web.css" in page and f"/ui/runs/{demo.runs['gbm']}" in page
    assert blueprint.name == "evtrack_web"


# -- live ------------------------------------------------------------------------------------------


def test_versions_change_with_new_events(tmp_path: Path) -> None:
    uri = str(tmp_path / "live")
    client = MlflowClient(uri)
    exp = client.create_experiment("live")
    run = client.create_run(exp, run_name="r1")
    client.log_metric(run.info.run_id, "loss", 1.0, step=0)
    client.flush()
    app = create_app(uri, min_interval=0)
    web = app.test_client()
    v1 = get_json(web, f"/-/experiments/{exp}/version")["version"]
    r1 = get_json(web, f"/-/runs/{run.info.run_id}/version")
    assert get_json(web, f"/-/experiments/{exp}/version")["version"] == v1
    assert get_json(web, f"/experiments/{exp}?format=json")["total"] == 1
    assert get_json(web, f"/-/runs/{run.info.run_id}/metric?key=loss")["total"] == 1
    client.log_metric(run.info.run_id, "loss", 0.5, step=1)
    client.create_run(exp, run_name="r2")
    client.flush()
    assert get_json(web, f"/-/experiments/{exp}/version")["version"] != v1
    r2 = get_json(web, f"/-/runs/{run.info.run_id}/version")
    assert r2["version"] != r1["version"] and r2["metrics"][0]["value"] == 0.5
    assert get_json(web, f"/experiments/{exp}?format=json")["total"] == 2
    assert get_json(web, f"/-/runs/{run.info.run_id}/metric?key=loss")["y"] == [1.0, 0.5]
    client.set_terminated(run.info.run_id)
    client.flush()
    assert get_json(web, f"/runs/{run.info.run_id}?format=json")["run"]["status"] == "FINISHED"


def test_incremental_snapshot_equals_a_fresh_one(tmp_path: Path) -> None:
    """Folding new segments into the touched runs gives the tables a full read gives."""
    from evtrack.web.snapshots import TABLES, Snapshots

    uri = str(tmp_path / "inc")
    client = MlflowClient(uri)
    exp = client.create_experiment("inc")
    runs = [client.create_run(exp, run_name=f"r{i}").info.run_id for i in range(5)]
    client.flush()
    live = Snapshots(MlflowClient(uri).store.layout, min_interval=0)
    live.experiment(exp)
    rng = random.Random(1)
    for round_ in range(4):
        for run_id in rng.sample(runs, 2):
            client.log_metric(run_id, "m", rng.random(), step=round_)
            client.set_tag(run_id, "round", str(round_))
        client.log_param(runs[round_], "p", str(round_))
        client.set_experiment_tag(exp, "round", str(round_))
        if round_ == 2:
            client.delete_run(runs[4])
            client.create_run(exp, run_name="late", tags={"mlflow.parentRunId": runs[0]})
        client.flush()
        incremental = live.experiment(exp)
        fresh = Snapshots(client.store.layout, min_interval=0).experiment(exp)
        assert incremental.version == fresh.version
        for table in TABLES:
            sql = f"select * from {table} order by all"
            assert repr(incremental.query(sql)) == repr(fresh.query(sql)), (round_, table)


def test_throttled_listing(tmp_path: Path) -> None:
    uri = str(tmp_path / "slow")
    client = MlflowClient(uri)
    exp = client.create_experiment("e")
    client.flush()
    app = create_app(uri, min_interval=3600)
    web = app.test_client()
    assert get_json(web, f"/experiments/{exp}?format=json")["total"] == 0
    client.create_run(exp)
    client.flush()
    assert get_json(web, f"/experiments/{exp}?format=json")["total"] == 0  # within min_interval


# -- small pieces ----------------------------------------------------------------------------------


def test_formatting() -> None:
    assert (
        fmt_value(0.1234567) == "0.123457" and fmt_value(3.0) == "3" and fmt_value(1e-7) == "1e-07"
    )
    assert fmt_value(float("nan")) == "NaN" and fmt_value(float("-inf")) == "-Infinity"
    assert fmt_value(None) == "" and fmt_value("x") == "x"
    assert fmt_duration(999) == "999ms" and fmt_duration(1500) == "1.5s"
    assert fmt_duration(125_000) == "2m 05s" and fmt_duration(3 * 3600_000) == "3h 00m"
    assert fmt_duration(50 * 3600_000) == "2d 02h" and fmt_duration(None) == "—"
    assert fmt_size(1000) == "1000 B" and fmt_size(2048) == "2.0 KB"


def test_nan_metrics_in_json_twins(tmp_path: Path) -> None:
    uri = str(tmp_path / "nan")
    client = MlflowClient(uri)
    exp = client.create_experiment("nan")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "a", math.nan, step=0)
    client.log_metric(run.info.run_id, "b", math.inf, step=0)
    client.flush()
    web = create_app(uri, min_interval=0).test_client()
    data = get_json(web, f"/runs/{run.info.run_id}?format=json")
    assert {m["key"]: m["value"] for m in data["metrics"]} == {"a": "NaN", "b": "Infinity"}
    table = get_json(web, f"/experiments/{exp}?format=json&col=metrics.a&sort=metrics.a")
    assert table["rows"][0]["values"]["metrics.a"] == "NaN"


def test_cli_ui_help() -> None:
    from click.testing import CliRunner

    from evtrack.cli.main import main

    result = CliRunner().invoke(main, ["ui", "--help"])
    assert result.exit_code == 0
    assert "--host" in result.output and "127.0.0.1" in result.output and "--port" in result.output


def test_many_runs_page_is_one_query(tmp_path: Path) -> None:
    """2,000 runs: the page and its sorted, filtered variants stay page-sized."""
    from test_web_seed import seed_many_runs

    uri = str(tmp_path / "many")
    exp = seed_many_runs(uri, 2000)
    web = create_app(uri, min_interval=0).test_client()
    data = get_json(web, f"/experiments/{exp}?format=json&per_page=50&sort=-metrics.m0&page=3")
    assert data["total"] == 2000 and len(data["rows"]) == 50 and data["pages"] == 40
    values = [r["values"]["metrics.m0"] for r in data["rows"]]
    assert values == sorted(values, reverse=True)
    filtered = get_json(
        web, f"/experiments/{exp}?format=json&filter=metrics.m0 > 0.5&per_page=1000"
    )
    assert 800 < filtered["total"] < 1200
    assert all(r["values"]["metrics.m0"] > 0.5 for r in filtered["rows"])
    random.seed(0)
    assert evtrack  # the package imports cleanly next to the web view


def test_evtrack_ui_serves_on_loopback(demo: Demo) -> None:
    """The real command: a waitress server on 127.0.0.1 that answers and refuses writes."""
    import urllib.error
    import urllib.request

    from test_web_seed import UIProcess

    server = UIProcess(demo.uri)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        names = {e["name"] for e in server.json("/?format=json")["experiments"]}
        assert "wine-quality" in names
        with urllib.request.urlopen(server.url + "/", timeout=30) as resp:
            assert resp.headers["Server"] == "evtrack"
        request = urllib.request.Request(server.url + "/", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 405
        refused.value.close()
    finally:
        server.stop()


# -- logged models and the registry ----------------------------------------------------------


@pytest.fixture(scope="module")
def models_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run with two logged models (one saved inside the run's artifacts, as evtrack's
    ``log_model`` does on a store; one in its own ``models/<id>/artifacts`` folder, as the
    stock client's uploads through a server), and a registry with versions and aliases."""
    from evtrack.artifacts.repository import ArtifactRepository

    uri = str(tmp_path_factory.mktemp("web-models") / "store")
    client = MlflowClient(uri)
    eid = client.create_experiment("models")
    run = client.create_run(eid, run_name="trainer")
    rid = run.info.run_id
    client.log_text(rid, "flavors:\n  python_function: {}\n", "model/MLmodel")
    inside = client._models.create_logged_model(
        eid, "model", rid, artifact_location=f"{run.info.artifact_uri}/model"
    )
    client.finalize_logged_model(inside.model_id, "READY")
    own = client.create_logged_model(eid, XSS["name"], rid)
    ArtifactRepository(own.artifact_location).write_bytes("MLmodel", b"flavors: {}\n")
    client.create_registered_model(XSS["tag"], description=XSS["param"])
    client.create_model_version(XSS["tag"], inside.model_uri, rid, model_id=inside.model_id)
    client.create_model_version(XSS["tag"], own.model_uri, rid, model_id=own.model_id)
    client.set_registered_model_alias(XSS["tag"], "champion", 2)
    client.create_registered_model("empty")
    client.flush()
    app = create_app(uri, min_interval=0)
    app.testing = True
    return {"uri": uri, "web": app.test_client(), "run": rid, "inside": inside, "own": own}


def test_run_page_lists_its_logged_models(models_store: dict) -> None:
    web, rid = models_store["web"], models_store["run"]
    inside, own = models_store["inside"], models_store["own"]
    before = files_of(models_store["uri"])
    data = get_json(web, f"/runs/{rid}?format=json")
    by_id = {m["model_id"]: m for m in data["logged_models"]}
    assert by_id[inside.model_id]["name"] == "model"
    assert by_id[inside.model_id]["status"] == "READY"
    assert by_id[inside.model_id]["files"] == {"path": "model", "model": None}
    assert by_id[own.model_id]["status"] == "PENDING"
    assert by_id[own.model_id]["artifact_location"] == own.artifact_location
    assert by_id[own.model_id]["files"] == {"path": None, "model": own.model_id}

    html = web.get(f"/runs/{rid}").get_data(as_text=True)
    assert 'id="logged-models"' in html and inside.model_id in html
    assert XSS["name"] not in html and "&lt;img src=x onerror=" in html
    assert f"/runs/{rid}/artifacts?path=model" in html
    assert f"/runs/{rid}/artifacts?model={own.model_id}" in html

    # the model in its own folder is browsed through the run's artifact pages
    shown = get_json(web, f"/runs/{rid}/artifacts?model={own.model_id}&path=MLmodel&format=json")
    assert shown["location"] == own.artifact_location and shown["model"]["name"] == XSS["name"]
    assert [n["name"] for n in shown["tree"]] == ["MLmodel"]
    assert shown["preview"]["kind"] == "mlmodel"
    raw = web.get(f"/runs/{rid}/artifacts/raw?model={own.model_id}&path=MLmodel")
    assert raw.status_code == 200 and raw.data == b"flavors: {}\n"
    html = web.get(f"/runs/{rid}/artifacts?model={own.model_id}").get_data(as_text=True)
    assert XSS["name"] not in html and f"model={own.model_id}" in html
    missing = get_json(web, f"/runs/{rid}/artifacts?model=m-{'0' * 32}&format=json", 404)
    assert missing["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert files_of(models_store["uri"]) == before


def test_models_page_lists_registered_models_versions_and_aliases(models_store: dict) -> None:
    web, rid = models_store["web"], models_store["run"]
    before = files_of(models_store["uri"])
    data = get_json(web, "/models?format=json")
    by_name = {m["name"]: m for m in data["registered_models"]}
    assert set(by_name) == {XSS["tag"], "empty"}
    m = by_name[XSS["tag"]]
    assert m["description"] == XSS["param"]
    assert m["aliases"] == [{"alias": "champion", "version": 2}]
    assert [v["version"] for v in m["versions"]] == [2, 1] and m["version_count"] == 2
    assert m["versions"][0]["aliases"] == ["champion"] and m["versions"][1]["aliases"] == []
    assert m["versions"][0]["model_id"] == models_store["own"].model_id
    assert m["versions"][0]["run_id"] == rid
    assert by_name["empty"]["versions"] == [] and by_name["empty"]["version_count"] == 0

    resp = web.get("/models")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Content-Security-Policy" in resp.headers
    assert XSS["tag"] not in html and XSS["param"] not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html and "@champion" in html
    assert f'href="/runs/{rid}"' in html
    assert 'href="/models"' in web.get("/").get_data(as_text=True)  # reachable from the header
    for method in WRITE_METHODS:
        assert web.open("/models", method=method).status_code == 405
    assert files_of(models_store["uri"]) == before


def test_models_page_of_a_store_without_a_registry(tmp_path: Path) -> None:
    client = MlflowClient(str(tmp_path / "store"))
    client.create_experiment("plain")
    client.flush()
    app = create_app(str(tmp_path / "store"), min_interval=0)
    data = get_json(app.test_client(), "/models?format=json")
    assert data["registered_models"] == []
    assert b"No registered models" in app.test_client().get("/models").data
