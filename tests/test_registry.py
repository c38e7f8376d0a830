"""Tracking URI → store: the scheme registry (evtrack/store/registry.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import subprocess_env

from evtrack import MlflowClient
from evtrack.errors import EvtrackError, InvalidParameterValue, MissingDependency
from evtrack.store import registry
from evtrack.store.base import TrackingStore
from evtrack.store.log.store import LogStore
from evtrack.store.rest.store import RestStore


def test_schemes_pick_their_store(tmp_path):
    assert registry.get_store_class(str(tmp_path)) is LogStore
    assert registry.get_store_class("memory://x") is LogStore
    assert registry.get_store_class("s3://bucket/prefix") is LogStore  # s3fs is installed
    assert registry.get_store_class("http://127.0.0.1:1") is RestStore
    assert registry.get_store_class("https://example.invalid") is RestStore


def test_one_store_per_canonical_uri_and_closable(tmp_path):
    a = registry.get_tracking_store(str(tmp_path / "s"))
    b = registry.get_tracking_store(f"file://{tmp_path}/s/")
    assert a is b and isinstance(a, TrackingStore)
    assert MlflowClient(str(tmp_path / "s")).store is a
    registry.close_stores()
    assert registry.get_tracking_store(str(tmp_path / "s")) is not a


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(InvalidParameterValue) as info:
        registry.get_store_class("ftp2://host/x")
    assert "ftp2" in info.value.message and "s3://" in info.value.message


def test_missing_extra_is_named_before_importing(monkeypatch):
    monkeypatch.setitem(
        registry._REGISTRY,
        "zz",
        registry.StoreEntry("evtrack.store.log.store:LogStore", "no_such_pkg_xyz", "zz"),
    )
    with pytest.raises(MissingDependency) as info:
        MlflowClient("zz://bucket/store")
    assert "pip install 'evtrack[zz]'" in info.value.message
    assert isinstance(info.value, ImportError) and isinstance(info.value, EvtrackError)


def test_client_takes_a_store(tmp_path):
    store = LogStore(str(tmp_path / "s"))
    client = MlflowClient(store=store)
    assert client.store is store and client.tracking_uri == store.uri
    run = client.create_run("0")
    assert store.get_run(run.info.run_id).info.run_id == run.info.run_id


def test_importing_evtrack_imports_no_store():
    code = (
        "import sys, evtrack; "
        "print(sorted(m for m in sys.modules if m.startswith('evtrack.store.') "
        "and m.split('.')[-1] in ('store', 'registry')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_dataset_input_fills_missing_text_fields():
    # Stored and REST dataset forms are untyped JSON: a field left out reads as the
    # dataclass default ("" for text), never as None in a field typed str.
    from evtrack.store.base import dataset_input

    got = dataset_input({"name": "wine", "digest": "d1"}, [("mlflow.data.context", "train")])
    ds = got.dataset
    assert (ds.name, ds.digest, ds.source_type, ds.source) == ("wine", "d1", "", "")
    assert ds.schema is None and ds.profile is None
    assert [(t.key, t.value) for t in got.tags] == [("mlflow.data.context", "train")]
