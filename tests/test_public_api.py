"""The curated public surface (STYLE.md items 3-5): a sorted ``__all__`` whose every name
exists, a cheap ``import evtrack``, MLflow's module paths, and one exception tree."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env

import evtrack
from evtrack import errors

PACKAGE = Path(evtrack.__file__).parent

#: What ``import evtrack as mlflow`` scripts reach for (MLflow's fluent names).
MLFLOW_FLUENT_NAMES = [
    "ActiveRun",
    "MlflowClient",
    "MlflowException",
    "active_run",
    "create_experiment",
    "delete_experiment",
    "delete_run",
    "delete_tag",
    "end_run",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_parent_run",
    "get_run",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_experiment_tag",
    "set_experiment_tags",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]


def test_all_is_sorted_unique_and_importable():
    names = evtrack.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(evtrack, name), name
    namespace: dict = {}
    exec("from evtrack import *", namespace)
    assert set(names) <= set(namespace)


def test_public_functions_are_in_all():
    public = {
        name
        for name, obj in vars(evtrack).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", "").startswith("evtrack")
    }
    assert public <= set(evtrack.__all__), public - set(evtrack.__all__)


def test_mlflow_fluent_names_exist():
    missing = [n for n in MLFLOW_FLUENT_NAMES if not hasattr(evtrack, n)]
    assert missing == []
    assert evtrack.__version__


def test_fluent_signatures_follow_mlflow():
    def params(fn):
        return list(inspect.signature(fn).parameters)

    assert params(evtrack.start_run)[:6] == [
        "run_id",
        "experiment_id",
        "run_name",
        "nested",
        "parent_run_id",
        "tags",
    ]
    assert params(evtrack.log_metric)[:5] == ["key", "value", "step", "synchronous", "timestamp"]
    assert params(evtrack.log_param)[:2] == ["key", "value"]
    assert params(evtrack.set_experiment) == ["experiment_name", "experiment_id"]
    assert params(evtrack.log_artifact)[:2] == ["local_path", "artifact_path"]
    assert params(evtrack.log_text)[:2] == ["text", "artifact_file"]
    assert params(evtrack.search_runs)[:5] == [
        "experiment_ids",
        "filter_string",
        "run_view_type",
        "max_results",
        "order_by",
    ]
    assert inspect.signature(evtrack.end_run).parameters["status"].default == "FINISHED"


def test_py_typed_marker():
    assert (PACKAGE / "py.typed").exists()


IMPORT_PROBE = r"""
import json, sys
before = set(sys.modules)
import evtrack as mlflow
mlflow.exceptions.MlflowException   # MLflow scripts use these module paths...
mlflow.tracking.MlflowClient        # ...without importing the submodules
loaded = set(sys.modules) - before
print(json.dumps(sorted(m for m in loaded if "." not in m)))
"""


def test_import_is_cheap_and_mlflow_module_paths_work():
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    heavy = {"duckdb", "flask", "pandas", "pyarrow", "numpy", "sklearn", "matplotlib", "s3fs"}
    assert loaded & heavy == set()


def test_exception_tree():
    assert evtrack.MlflowException is errors.EvtrackError
    assert issubclass(errors.InvalidParameterValue, ValueError)
    assert issubclass(errors.RunNotFound, LookupError)
    assert issubclass(errors.ExperimentNotFound, errors.ResourceDoesNotExist)
    assert issubclass(errors.ArtifactNotFound, FileNotFoundError)
    assert issubclass(errors.PermissionDenied, PermissionError)
    assert issubclass(errors.StoreVersionError, errors.StoreError)
    assert issubclass(errors.InvalidFilter, errors.InvalidParameterValue)
    for name in errors.__all__:
        obj = getattr(errors, name)
        if inspect.isclass(obj):
            assert issubclass(obj, errors.EvtrackError), name
            assert obj.__doc__, name
            assert obj.__name__ in errors.__doc__ or obj is errors.EvtrackError, name


@pytest.mark.parametrize(
    ("cls", "code", "status"),
    [
        (errors.EvtrackError, "INTERNAL_ERROR", 500),
        (errors.InvalidParameterValue, "INVALID_PARAMETER_VALUE", 400),
        (errors.BadRequest, "BAD_REQUEST", 400),
        (errors.ResourceAlreadyExists, "RESOURCE_ALREADY_EXISTS", 400),
        (errors.ResourceDoesNotExist, "RESOURCE_DOES_NOT_EXIST", 404),
        (errors.RunNotFound, "RESOURCE_DOES_NOT_EXIST", 404),
        (errors.InvalidState, "INVALID_STATE", 400),
        (errors.PermissionDenied, "PERMISSION_DENIED", 403),
    ],
)
def test_error_codes_and_http_status(cls, code, status):
    exc = cls("what went wrong")
    assert (exc.error_code, exc.get_http_status_code()) == (code, status)
    assert json.loads(exc.serialize_as_json()) == {"error_code": code, "message": "what went wrong"}
    rebuilt = errors.error_for_code(code, "again")
    assert rebuilt.error_code == code and isinstance(rebuilt, errors.EvtrackError)
