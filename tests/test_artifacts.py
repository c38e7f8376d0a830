"""Artifacts: writing, listing and downloading files of a run, on every backend."""

from __future__ import annotations

import json
import os

import pytest
import yaml

import evtrack
from evtrack.errors import ArtifactNotFound, InvalidParameterValue


@pytest.fixture
def run_id(client) -> str:
    return client.create_run("0").info.run_id


@pytest.fixture
def local(tmp_path) -> tuple[evtrack.MlflowClient, str]:
    """A client and a run on a local store: for behaviour that no backend changes."""
    uri = str(tmp_path / "local-store")
    evtrack.set_tracking_uri(uri)
    client = evtrack.MlflowClient(uri)
    return client, client.create_run("0").info.run_id


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_log_artifact_list_and_download(client, run_id, tmp_path):
    src = tmp_path / "model.txt"
    src.write_text("weights")
    client.log_artifact(run_id, str(src))
    client.log_artifact(run_id, str(src), "models/v1")
    infos = client.list_artifacts(run_id)
    assert [(i.path, i.is_dir) for i in infos] == [("model.txt", False), ("models", True)]
    assert infos[0].file_size == len("weights")
    assert infos[1].file_size is None
    (nested,) = client.list_artifacts(run_id, "models")
    assert (nested.path, nested.is_dir) == ("models/v1", True)
    (leaf,) = client.list_artifacts(run_id, "models/v1")
    assert leaf.path == "models/v1/model.txt"
    # Listing a file lists nothing, as in MLflow.
    assert client.list_artifacts(run_id, "model.txt") == []
    assert client.list_artifacts(run_id, "no/such/dir") == []

    dst = tmp_path / "dl"
    local = client.download_artifacts(run_id, "models/v1/model.txt", str(dst))
    assert local == str(dst / "models" / "v1" / "model.txt")
    assert read(local) == "weights"
    whole = client.download_artifacts(run_id, "", str(tmp_path / "all"))
    assert read(os.path.join(whole, "models", "v1", "model.txt")) == "weights"
    # Without dst_path a fresh temporary folder is used.
    assert read(client.download_artifacts(run_id, "model.txt")) == "weights"


def test_log_artifacts_tree(client, run_id, tmp_path):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "top.txt").write_text("top")
    (tree / "a" / "mid.txt").write_text("mid")
    (tree / "a" / "b" / "deep.txt").write_text("deep")
    client.log_artifacts(run_id, str(tree), "out")
    assert [i.path for i in client.list_artifacts(run_id, "out")] == ["out/a", "out/top.txt"]
    folder = client.download_artifacts(run_id, "out/a", str(tmp_path / "dl"))
    assert read(os.path.join(folder, "b", "deep.txt")) == "deep"
    assert read(os.path.join(folder, "mid.txt")) == "mid"
    paths = {
        p for (p,) in client.sql("select path from artifacts where run_id = ?", [run_id]).fetchall()
    }
    assert paths == {"out/top.txt", "out/a/mid.txt", "out/a/b/deep.txt"}


def test_log_artifacts_into_root(local, tmp_path):
    client, run_id = local
    tree = tmp_path / "flat"
    tree.mkdir()
    (tree / "x.txt").write_text("x")
    client.log_artifacts(run_id, str(tree))
    assert [i.path for i in client.list_artifacts(run_id)] == ["x.txt"]


def test_log_text_and_dict(client, run_id, tmp_path):
    client.log_text(run_id, "héllo\n", "notes/hello.txt")
    data = {"b": [1, 2.5, None], "a": {"nested": True}}
    client.log_dict(run_id, data, "config.json")
    client.log_dict(run_id, data, "config.yaml")
    client.log_dict(run_id, data, "config.yml")
    dl = str(tmp_path / "dl")
    with open(client.download_artifacts(run_id, "notes/hello.txt", dl), encoding="utf-8") as f:
        assert f.read() == "héllo\n"
    assert json.loads(read(client.download_artifacts(run_id, "config.json", dl))) == data
    for name in ("config.yaml", "config.yml"):
        text = read(client.download_artifacts(run_id, name, dl))
        assert yaml.safe_load(text) == data
        assert not text.lstrip().startswith("{")  # block YAML, not JSON


def test_fluent_artifact_functions(local, tmp_path):
    client, _ = local
    src = tmp_path / "f.txt"
    src.write_text("fluent")
    with evtrack.start_run() as run:
        evtrack.log_artifact(str(src), "dir")
        evtrack.log_text("t", "t.txt")
        evtrack.log_dict({"k": 1}, "d.json")
        (tmp_path / "many").mkdir()
        (tmp_path / "many" / "m.txt").write_text("m")
        evtrack.log_artifacts(str(tmp_path / "many"), "many")
        uri = evtrack.get_artifact_uri()
    names = [i.path for i in client.list_artifacts(run.info.run_id)]
    assert names == ["d.json", "dir", "many", "t.txt"]
    assert uri == client.get_run(run.info.run_id).info.artifact_uri


def test_log_figure_matplotlib(local, tmp_path):
    client, run_id = local
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [3, 1, 2])
    try:
        client.log_figure(run_id, fig, "plots/curve.png")
        with evtrack.start_run(run_id=run_id):
            evtrack.log_figure(fig, "plots/curve.svg")
    finally:
        plt.close(fig)
    with open(client.download_artifacts(run_id, "plots/curve.png", str(tmp_path)), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    svg = read(client.download_artifacts(run_id, "plots/curve.svg", str(tmp_path)))
    assert "<svg" in svg


def test_log_image_numpy(local, tmp_path):
    client, run_id = local
    import numpy as np

    image = np.zeros((4, 4, 3), dtype=np.uint8)
    client.log_image(run_id, image, "img.png")
    with open(client.download_artifacts(run_id, "img.png", str(tmp_path)), "rb") as f:
        assert f.read(4) == b"\x89PNG"


def test_log_figure_refuses_unknown_objects(local):
    client, run_id = local
    with pytest.raises(TypeError, match="matplotlib"):
        client.log_figure(run_id, object(), "x.png")


def test_missing_artifacts(local, tmp_path):
    client, run_id = local
    with pytest.raises(ArtifactNotFound) as info:
        client.download_artifacts(run_id, "nothing.txt", str(tmp_path))
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(InvalidParameterValue, match="not a file"):
        client.log_artifact(run_id, str(tmp_path / "missing.bin"))
    with pytest.raises(InvalidParameterValue, match="not a folder"):
        client.log_artifacts(run_id, str(tmp_path / "missing-dir"))


def test_delete_artifact_is_an_event(client, run_id):
    client.log_text(run_id, "a", "keep.txt")
    client.log_text(run_id, "b", "drop.txt")
    client.delete_artifact(run_id, "drop.txt")
    assert [i.path for i in client.list_artifacts(run_id)] == ["keep.txt"]
    assert [p for (p,) in client.sql("select path from artifacts").fetchall()] == ["keep.txt"]
    kinds = client.sql(
        "select value from events where kind = 'artifact' and key = 'drop.txt' order by time, seq"
    ).fetchall()
    assert kinds == [(1.0,), (None,)]


def test_artifact_root_setting_moves_new_experiments(tmp_path, monkeypatch, make_store_uri):
    root = make_store_uri("memory")
    monkeypatch.setenv("EVTRACK_ARTIFACT_ROOT", root)
    client = evtrack.MlflowClient(str(tmp_path / "store-with-remote-artifacts"))
    exp_id = client.create_experiment("remote-artifacts")
    assert client.get_experiment(exp_id).artifact_location == f"{root}/{exp_id}"
    run_id = client.create_run(exp_id).info.run_id
    client.log_text(run_id, "elsewhere", "a.txt")
    assert client.get_run(run_id).info.artifact_uri.startswith(root)
    assert read(client.download_artifacts(run_id, "a.txt", str(tmp_path / "dl"))) == "elsewhere"
    assert not list((tmp_path / "store-with-remote-artifacts").rglob("a.txt"))
