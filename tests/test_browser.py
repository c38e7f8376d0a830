"""End to end: a real ``evtrack ui`` process, driven by headless Chromium (Playwright).

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``$EVTRACK_CHROMIUM``) and the
``playwright`` Python package; Playwright's own browser download is never used. Without
them the tests fail, naming what is missing (see ``required.py`` for the local opt-out). ``EVTRACK_SCREENSHOTS=<dir>`` saves a
screenshot of every page there (``docs/screenshots`` is made that way).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from required import chromium_path, playwright_sync_api
from test_web_seed import XSS, Demo, UIProcess, seed_demo

from evtrack.tracking.client import MlflowClient

CHROMIUM = chromium_path()
SHOTS = os.environ.get("EVTRACK_SCREENSHOTS")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    import numpy as np

    demo = seed_demo(str(tmp_path_factory.mktemp("browser") / "store"))
    client = MlflowClient(demo.uri)
    run = client.create_run(demo.quick, run_name="long", start_time=1_714_560_000_000)
    n = 200_000
    values = np.sin(np.arange(n) / 5000.0)
    values[150_000] = 25.0
    client.log_metric_series(run.info.run_id, "loss", values, np.arange(n))
    client.set_terminated(run.info.run_id)
    client.flush()
    demo.runs["long"] = run.info.run_id
    return demo


@pytest.fixture(scope="module")
def ui(demo: Demo) -> Iterator[UIProcess]:
    server = UIProcess(demo.uri)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright_sync_api().sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    pg = context.new_page()
    pg.errors = []  # page errors and console errors (CSP violations show up here)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("dialog", lambda d: (pg.errors.append("dialog: " + d.message), d.dismiss()))
    yield pg
    context.close()


def shot(pg, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def assert_clean(pg) -> None:
    assert pg.evaluate("typeof window.__xss") == "undefined"
    assert pg.errors == []


def wait_charts(pg, count: int | None = None) -> list[dict]:
    pg.wait_for_function(
        "() => { const f = [...document.querySelectorAll('figure.chart')];"
        " return f.length > 0 && f.every(x => x.dataset.ready === '1' && !x.dataset.loading) }",
        timeout=20_000,
    )
    charts = pg.eval_on_selector_all(
        "figure.chart",
        "fs => fs.map(f => ({key: f.dataset.key, points: +f.dataset.points, total: +f.dataset.total,"
        " canvas: !!f.querySelector('canvas'), info: f.querySelector('.chart-info').textContent}))",
    )
    if count is not None:
        assert len(charts) == count
    assert all(c["canvas"] for c in charts)
    return charts


def row_names(pg) -> list[str]:
    return pg.eval_on_selector_all(
        "#runs-body tr[data-run-id] td.name a", "as => as.map(a => a.textContent)"
    )


# -- pages ----------------------------------------------------------------------------------------


def test_experiments_page(ui: UIProcess, page) -> None:
    page.goto(ui.url + "/")
    names = page.eval_on_selector_all(
        "#experiments tbody td:first-child a", "as => as.map(a => a.textContent)"
    )
    assert {"wine-quality", "quickstart", "Default"} <= set(names)
    shot(page, "experiments")
    page.fill("#q", "wine")
    page.press("#q", "Enter")
    page.wait_for_url("**q=wine**")
    assert page.eval_on_selector_all("#experiments tbody tr", "rs => rs.length") == 1
    assert_clean(page)


def test_runs_table_sort_filter_fold(ui: UIProcess, demo: Demo, page) -> None:
    page.goto(f"{ui.url}/experiments/{demo.wine}")
    assert page.get_attribute(".runs-page", "data-ready") == "1"
    assert len(row_names(page)) == 6
    shot(page, "runs-table")
    page.click("th[data-col='metrics.rmse'] a")
    page.wait_for_url("**sort=metrics.rmse**")
    assert row_names(page)[:3] == ["gbm-1", "ridge-2", "random-forest-0"]
    page.click("th[data-col='metrics.rmse'] a")
    page.wait_for_url("**sort=-metrics.rmse**")
    assert row_names(page)[-1] == "sweep"
    page.fill("#filter", "metrics.rmse < 0.6")
    page.press("#filter", "Enter")
    page.wait_for_url("**filter=**")
    assert sorted(row_names(page)) == ["gbm-1", "random-forest-0", "ridge-2"]
    assert "sort=-metrics.rmse" in page.url  # the sort survives the new filter
    page.fill("#filter", "metrics.rmse <> > 1")
    page.press("#filter", "Enter")
    page.wait_for_selector("#filter-error")
    assert page.get_attribute("#filter", "aria-invalid") == "true"
    assert page.text_content("#filter-error")
    shot(page, "runs-filter-error")
    assert page.errors == [
        "Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"
    ]
    page.errors.clear()  # the page itself answers 400 with the error inline
    # fold: the sweep's four children appear under it, indented
    page.goto(f"{ui.url}/experiments/{demo.wine}")
    page.click("tr:has(a:text('sweep')) .fold")
    page.wait_for_selector("#runs-body tr[data-depth='1']")
    assert page.eval_on_selector_all("#runs-body tr[data-depth='1']", "rs => rs.length") == 4
    assert page.get_attribute("tr:has(a:text-is('sweep')) .fold", "aria-expanded") == "true"
    shot(page, "runs-nested")
    page.click("tr:has(a:text-is('sweep')) .fold")
    assert page.eval_on_selector_all("#runs-body tr[data-depth='1']", "rs => rs.length") == 0
    # columns picker: choose a param column
    page.click("#columns-picker summary")
    page.check(".picker input[name=col][value='tags.team']")
    page.click(".picker button[type=submit]")
    page.wait_for_selector("th[data-col='tags.team']")
    assert "tabular" in page.text_content("#runs-body")
    assert_clean(page)


def test_keyboard_selection_and_compare(ui: UIProcess, demo: Demo, page) -> None:
    page.goto(f"{ui.url}/experiments/{demo.wine}?sort=metrics.rmse")
    page.focus("#runs-body tr[data-run-id]")
    page.keyboard.press("Space")  # select gbm-1
    page.keyboard.press("ArrowDown")
    page.keyboard.press("x")  # select ridge-2
    page.keyboard.press("j")
    page.keyboard.press("x")  # select random-forest-0
    assert page.text_content("#selection") == "3 selected"
    assert f"sel={demo.runs['gbm']}%2C{demo.runs['ridge']}" in page.url
    focused = page.evaluate("document.activeElement.dataset.runId")
    assert focused == demo.runs["random-forest"]
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/runs/{demo.runs['random-forest']}")
    page.go_back()
    # the selection came back with the URL
    assert page.text_content("#selection") == "3 selected"
    page.keyboard.press("c")
    page.wait_for_url("**/compare?runs=**")
    charts = wait_charts(page)
    assert {c["key"] for c in charts} == {"mae", "r2", "rmse"}
    rmse = next(c for c in charts if c["key"] == "rmse")
    assert rmse["points"] == 900 and rmse["total"] == 900
    assert page.eval_on_selector_all("#legend li", "ls => ls.length") == 3
    assert page.eval_on_selector_all("#parallel polyline", "ps => ps.length") == 3
    shot(page, "compare")
    page.check("#only-diff")
    assert "only_diff=1" in page.url
    assert (
        page.eval_on_selector_all("#diff tr.same", "rs => rs.filter(r => r.offsetParent).length")
        == 0
    )
    assert_clean(page)


def test_run_page_charts_zoom_and_settings(ui: UIProcess, demo: Demo, page) -> None:
    page.goto(f"{ui.url}/runs/{demo.runs['child-1']}")
    charts = wait_charts(page, 2)
    rmse = next(c for c in charts if c["key"] == "rmse")
    assert rmse["points"] == rmse["total"] == 201
    shot(page, "run")
    over = page.locator("figure[data-key='rmse'] .u-over")
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "() => document.querySelector(\"figure[data-key='rmse'] .chart-info\").textContent.includes('zoomed')"
    )
    zoomed = wait_charts(page)
    assert next(c for c in zoomed if c["key"] == "rmse")["points"] < 80
    # hover shows values in the legend
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    legend = page.text_content("figure[data-key='rmse'] .u-legend")
    assert re.search(r"\d\.\d", legend)
    over.dblclick()
    page.wait_for_function(
        "() => !document.querySelector(\"figure[data-key='rmse'] .chart-info\").textContent.includes('zoomed')"
    )
    page.check("input[name=log]")
    assert "log=1" in page.url
    page.select_option("select[name=x]", "relative")
    assert "x=relative" in page.url
    wait_charts(page, 2)
    page.fill("input[name=smooth]", "0.8")
    page.dispatch_event("input[name=smooth]", "change")
    assert "smooth=0.8" in page.url
    # the settings are in the URL: a reload keeps them
    page.reload()
    wait_charts(page, 2)
    assert page.input_value("select[name=x]") == "relative" and page.is_checked("input[name=log]")
    assert_clean(page)


def test_long_series_is_downsampled(ui: UIProcess, demo: Demo, page) -> None:
    page.goto(f"{ui.url}/runs/{demo.runs['long']}")
    (chart,) = wait_charts(page, 1)
    assert chart["total"] == 200_000 and 500 < chart["points"] < 6_000
    assert "of 200,000 points" in chart["info"]
    top = page.evaluate("Math.max(...evtrack.charts.get('loss').results[0].y)")
    assert top == 25.0  # the one-point spike is drawn
    shot(page, "run-long-series")


def test_artifacts(ui: UIProcess, demo: Demo, page) -> None:
    rid = demo.runs["random-forest"]
    page.goto(f"{ui.url}/runs/{rid}/artifacts?path=model/MLmodel")
    assert "python_function" in page.text_content("#preview")
    shot(page, "artifacts-mlmodel")
    page.click("#tree a:text-is('sample.csv')")
    page.wait_for_selector("table.csv")
    assert page.eval_on_selector_all("table.csv tbody tr", "rs => rs.length") == 3
    shot(page, "artifacts-csv")
    page.click("#tree a:text-is('residuals.png')")
    page.wait_for_selector("img.artifact-image")
    page.wait_for_function("() => document.querySelector('img.artifact-image').naturalWidth > 0")
    shot(page, "artifacts-image")
    page.click("#tree a:text-is('evil.svg')")
    page.wait_for_function("() => document.querySelector('img.artifact-image').naturalWidth > 0")
    page.click("#tree a:text-is('report.html')")
    assert "not shown here" in page.text_content("#preview")
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "report.html"
    page.click("#tree a:text-is('notes.txt')")
    assert XSS["tag"] in page.text_content("pre.code")
    assert_clean(page)


def test_xss_payloads_never_run(ui: UIProcess, demo: Demo, page) -> None:
    rid = demo.runs["xss"]
    urls = [
        f"/runs/{rid}",
        f"/experiments/{demo.wine}?col=params.payload&col=tags.team&col=params.model&col=metrics.rmse",
        f"/compare?runs={rid},{demo.runs['gbm']}",
        f"/runs/{rid}/artifacts",
        f"/runs/{demo.runs['random-forest']}/artifacts?path=plots/evil.svg",
        f"/?q={XSS['tag']}",
    ]
    for url in urls:
        page.goto(ui.url + url)
        if "/runs/" in url and "artifacts" not in url:
            wait_charts(page)
        page.wait_for_timeout(200)
        assert page.evaluate("typeof window.__xss") == "undefined", url
    # the experiments search read "<script>window.__xss=1</script>" as a (bad) filter: 400
    page.errors.remove(
        "Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"
    )
    page.goto(f"{ui.url}/runs/{rid}")
    assert page.text_content("h1 #run-name") == XSS["name"]
    assert XSS["note"] in page.text_content(".note")
    shot(page, "run-xss-escaped")
    assert_clean(page)


def test_dark_theme(ui: UIProcess, demo: Demo, browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    pg = context.new_page()
    pg.goto(f"{ui.url}/runs/{demo.runs['gbm']}")
    wait_charts(pg)
    assert pg.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(17, 20, 24)"
    shot(pg, "run-dark")
    pg.goto(f"{ui.url}/experiments/{demo.wine}")
    shot(pg, "runs-table-dark")
    context.close()


# -- live --------------------------------------------------------------------------------------------


def test_live_updates_and_pause_when_hidden(ui: UIProcess, demo: Demo, page) -> None:
    client = MlflowClient(demo.uri)
    live = demo.runs["live"]
    page.goto(f"{ui.url}/runs/{live}")
    (chart,) = wait_charts(page, 1)
    assert chart["total"] == 1
    for step in range(1, 40):
        client.log_metric(live, "rmse", 1.2 - step * 0.01, step=step)
    client.log_metric(live, "accuracy", 0.5, step=0)
    client.flush()
    page.wait_for_function(
        "() => document.querySelector(\"figure[data-key='rmse']\").dataset.total === '40'",
        timeout=15_000,
    )
    assert page.text_content("#metrics-table tr[data-key='rmse'] td") == "0.81"
    page.wait_for_selector("figure[data-key='accuracy'][data-ready='1']", timeout=15_000)
    assert "Updated" in page.text_content("#live")
    shot(page, "run-live")

    # the runs table picks up a new run without a reload (rows rebuilt by the script,
    # payloads included: they must stay text)
    page.goto(f"{ui.url}/experiments/{demo.wine}?col=params.payload&col=params.model&col=tags.team")
    before = len(row_names(page))
    client.create_run(demo.wine, run_name="arrived-live")
    client.flush()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#runs-body td.name a')].some(a => a.textContent === 'arrived-live')",
        timeout=15_000,
    )
    assert len(row_names(page)) == before + 1
    assert XSS["name"] in row_names(page)

    # hidden tab: no more polling
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if "/-/" in r.url else None)
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    page.wait_for_timeout(100)
    calls.clear()
    page.wait_for_timeout(7_000)
    assert calls == []
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    page.wait_for_timeout(1_000)
    assert calls  # polling resumes at once when the tab is shown again
    assert_clean(page)


def test_logged_models_and_registry(ui: UIProcess, demo: Demo, page) -> None:
    """A run's logged models link to their files; the models page shows versions and
    aliases; names that carry markup stay text."""
    from evtrack.artifacts.repository import ArtifactRepository

    client = MlflowClient(demo.uri)
    rid = demo.runs["random-forest"]
    model = client.create_logged_model(demo.wine, XSS["name"], rid)  # its own folder
    ArtifactRepository(model.artifact_location).write_bytes(
        "MLmodel", b"flavors:\n  python_function: {}\n"
    )
    client.finalize_logged_model(model.model_id, "READY")
    client.create_registered_model(XSS["tag"], description="the wine model")
    client.create_model_version(XSS["tag"], model.model_uri, rid, model_id=model.model_id)
    client.set_registered_model_alias(XSS["tag"], "champion", 1)
    client.flush()

    page.goto(f"{ui.url}/runs/{rid}")
    row = f"#logged-models tr[data-model-id='{model.model_id}']"
    page.wait_for_selector(row)
    assert page.text_content(f"{row} th") == XSS["name"]
    assert page.text_content(f"{row} .status") == "READY"
    shot(page, "run-logged-models")
    page.click(f"{row} a")
    page.wait_for_selector("#tree a:text-is('MLmodel')")
    page.click("#tree a:text-is('MLmodel')")
    assert "python_function" in page.text_content("#preview")

    page.click("header a.nav-models")
    page.wait_for_selector("section.registered-model")
    section = page.locator("section.registered-model", has_text="the wine model")
    assert section.locator("h2").text_content().startswith(XSS["tag"])
    assert "@champion" in section.locator("tr[data-version='1']").text_content()
    assert section.locator(f"tr[data-version='1'] a[href='/runs/{rid}']").count() == 1
    shot(page, "models")
    assert_clean(page)
