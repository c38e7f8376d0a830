"""MLproject parsing, parameters and command templates; conda.yaml translation;
interpreter discovery. No process is started except the interpreter version probes."""

from __future__ import annotations

import os
import shlex
import sys

import pytest

from evtrack.errors import InvalidParameterValue, ResourceDoesNotExist
from evtrack.projects.environments.base import EnvironmentUnavailable
from evtrack.projects.environments.interpreters import find_python
from evtrack.projects.environments.python_env import from_conda_yaml, from_python_env_yaml
from evtrack.projects.sources import split_uri
from evtrack.projects.spec import Parameter, load_project

MLPROJECT = """
name: demo
python_env: python_env.yaml
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      epochs: {type: int, default: 3}
      data: path
      name: string
    command: "python train.py {alpha} {epochs} {data} {name}"
  other:
    command: "echo other"
"""


@pytest.fixture
def project_dir(tmp_path):
    (tmp_path / "MLproject").write_text(MLPROJECT)
    (tmp_path / "python_env.yaml").write_text('python: "3.11"\ndependencies: [six]\n')
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "job.sh").write_text("echo sh\n")
    return tmp_path


def test_load_project(project_dir):
    project = load_project(str(project_dir))
    assert project.name == "demo"
    assert project.env_type == "python_env"
    assert project.env_file == os.path.join(str(project_dir), "python_env.yaml")
    main = project.entry_point("main")
    assert main.parameters["alpha"] == Parameter("alpha", "float", 0.5)
    assert main.parameters["data"] == Parameter("data", "path", None)
    assert set(project.entry_points) == {"main", "other"}


def test_mlproject_name_is_case_insensitive(tmp_path):
    (tmp_path / "mlproject").write_text("entry_points:\n  main:\n    command: echo hi\n")
    assert load_project(str(tmp_path)).entry_point("main").command == "echo hi"


def test_missing_required_parameters_are_all_named(project_dir):
    main = load_project(str(project_dir)).entry_point("main")
    with pytest.raises(InvalidParameterValue) as exc:
        main.resolve({"alpha": "1"})
    assert "'data', 'name'" in exc.value.message
    assert "-P data=..." in exc.value.message


def test_defaults_types_and_canonical_values(project_dir):
    main = load_project(str(project_dir)).entry_point("main")
    declared, extra = main.resolve({"data": "d.csv", "name": "x", "epochs": "10"})
    assert declared == {"alpha": "0.5", "epochs": "10", "data": "d.csv", "name": "x"}
    assert extra == {}
    # A float given as "5" is logged as "5.0": what float(sys.argv[1]) then log_param logs.
    declared, _ = main.resolve({"data": "d", "name": "x", "alpha": "5"})
    assert declared["alpha"] == "5.0"


@pytest.mark.parametrize(
    ("name", "value", "kind"), [("alpha", "abc", "a float"), ("epochs", "2.5", "an int")]
)
def test_int_and_float_are_checked(project_dir, name, value, kind):
    main = load_project(str(project_dir)).entry_point("main")
    with pytest.raises(InvalidParameterValue) as exc:
        main.resolve({"data": "d", "name": "x", name: value})
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
    assert f"'{name}' must be {kind}, got '{value}'" in exc.value.message


def test_uri_parameter_must_be_a_uri():
    with pytest.raises(InvalidParameterValue, match="must be a URI"):
        Parameter("u", "uri").parse("c:not-a-uri")
    assert Parameter("u", "uri").parse("s3://bucket/key") == "s3://bucket/key"


def test_command_quotes_values_and_appends_extra_parameters(project_dir):
    main = load_project(str(project_dir)).entry_point("main")
    given = {"data": "my file.csv", "name": "a;rm -rf /", "batch-size": "8", "flag": "x y"}
    declared, extra = main.resolve(given)
    command = main.command_line(declared, extra)
    assert shlex.split(command) == [
        "python", "train.py", "0.5", "3", "my file.csv", "a;rm -rf /",
        "--batch-size", "8", "--flag", "x y",
    ]  # fmt: skip


def test_script_entry_points(project_dir):
    project = load_project(str(project_dir))
    assert project.entry_point("train.py").command == "python train.py"
    assert project.entry_point("job.sh").command == "bash job.sh"
    with pytest.raises(ResourceDoesNotExist, match="'nope' among the project's entry points"):
        project.entry_point("nope")
    with pytest.raises(ResourceDoesNotExist, match="does not exist"):
        project.entry_point("missing.py")


def test_bad_mlproject_files(tmp_path):
    cases = {
        "entry_points:\n  main:\n    command: 'python t.py {nope}'\n": None,
        "entry_points:\n  main:\n    parameters: {a: {type: number}}\n    command: x\n": "unknown type",
        "python_env: p.yaml\nconda_env: c.yaml\n": "one environment",
        "docker_env: {volumes: [1]}\n": "image",
        "python_env: missing.yaml\n": "no such file",
        "entry_points: [1, 2]\n": "mapping",
        "a: [\n": "not valid YAML",
    }
    for text, message in cases.items():
        (tmp_path / "MLproject").write_text(text)
        if message is None:  # parses; the unknown placeholder is reported when run
            ep = load_project(str(tmp_path)).entry_point("main")
            with pytest.raises(InvalidParameterValue, match="placeholder 'nope'"):
                ep.command_line({}, {})
            continue
        with pytest.raises((InvalidParameterValue, ResourceDoesNotExist), match=message):
            load_project(str(tmp_path))


def test_no_mlproject_uses_environment_files(tmp_path):
    assert load_project(str(tmp_path)).env_type is None
    (tmp_path / "conda.yaml").write_text("dependencies: [python=3.11]\n")
    assert load_project(str(tmp_path)).env_type == "conda_env"
    (tmp_path / "python_env.yaml").write_text("python: '3.11'\n")
    assert load_project(str(tmp_path)).env_type == "python_env"  # MLflow's precedence


def test_docker_env(tmp_path):
    (tmp_path / "MLproject").write_text(
        "name: d\ndocker_env:\n  image: python:3.11\n  volumes: ['/a:/b']\n"
        "  environment: [['X', '1'], 'HOME']\nentry_points:\n  main:\n    command: echo\n"
    )
    project = load_project(str(tmp_path))
    assert project.env_type == "docker_env"
    assert project.docker_env["image"] == "python:3.11"


def test_subdirectory_must_stay_inside():
    assert split_uri("https://h/r.git#sub/dir") == ("https://h/r.git", "sub/dir")
    assert split_uri("'/a/b'") == ("/a/b", "")
    for bad in ("x#../up", "x#/abs"):
        with pytest.raises(InvalidParameterValue, match="inside the project"):
            split_uri(bad)


def test_python_env_yaml(tmp_path):
    (tmp_path / "requirements.txt").write_text("six\n")
    path = tmp_path / "python_env.yaml"
    path.write_text(
        "python: 3.11\nbuild_dependencies: [pip]\ndependencies: [-r requirements.txt]\n"
    )
    env = from_python_env_yaml(str(path))
    assert (env.python, env.build_dependencies, env.dependencies) == (
        "3.11",
        ("pip",),
        ("-r requirements.txt",),
    )
    assert env.included == ("six\n",)  # the file's content is part of the cache key


def test_conda_yaml_translation(tmp_path):
    path = tmp_path / "conda.yaml"
    path.write_text(
        "name: tutorial\nchannels: [conda-forge]\ndependencies:\n"
        "  - python=3.8\n  - pip\n  - numpy=1.26\n  - conda-forge::pandas>=2\n"
        "  - pytorch==2.1.0\n  - scikit-learn=1.3.0=py38_0\n"
        "  - pip:\n    - mlflow>=1.0\n    - cloudpickle==1.6.0\n"
    )
    env = from_conda_yaml(str(path))
    assert env.python == "3.8"
    assert env.dependencies == (
        "numpy==1.26.*", "pandas>=2", "torch==2.1.0", "scikit-learn==1.3.0.*",
        "mlflow>=1.0", "cloudpickle==1.6.0",
    )  # fmt: skip


def test_conda_only_packages_are_named(tmp_path):
    path = tmp_path / "conda.yaml"
    path.write_text("dependencies: [python=3.11, cudatoolkit=11.8, r-base, six]\n")
    with pytest.raises(EnvironmentUnavailable) as exc:
        from_conda_yaml(str(path))
    assert "cudatoolkit=11.8, r-base" in exc.value.message
    assert "--env-manager conda" in exc.value.message


def test_find_python_locally():
    path, version = find_python(None)
    assert path == sys.executable
    pyenv = os.path.expanduser("~/.pyenv/versions/3.12.1/bin/python")
    if not os.path.exists(pyenv):
        pytest.skip("no pyenv 3.12.1 here")
    path, version = find_python("3.12")
    assert version.startswith("3.12.")


def test_missing_python_version_is_named_not_downloaded():
    with pytest.raises(EnvironmentUnavailable) as exc:
        find_python("3.99")
    assert "Python 3.99, which is not installed here" in exc.value.message
    assert "pyenv install 3.99" in exc.value.message
    with pytest.raises(EnvironmentUnavailable, match="not a version number"):
        find_python("latest")
