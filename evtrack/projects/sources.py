"""Where a project comes from: a local folder, or a git repository cloned into the cache.

``URI[#subdirectory]`` where URI is

* a local folder: run in place (its git commit, branch and remote are recorded if it is
  in a work tree); with ``version`` it must be a git repository and is cloned at that ref;
* a git repository: ``https://…``, ``http://…``, ``ssh://…``, ``git://…``, ``git@host:…``
  or ``file://…``: a bare clone cached under ``git/`` (fetched again on each run unless
  ``version`` is a commit already there), checked out per run into ``checkouts/``.

``version`` is a branch, a tag or a commit (full or abbreviated). Git runs as the ``git``
command with ``GIT_TERMINAL_PROMPT=0``: credentials come from the user's git setup
(credential helper, SSH agent); a repository that would prompt fails instead of hanging.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass

from evtrack.errors import InvalidParameterValue, ResourceDoesNotExist
from evtrack.projects.cache import cache_dir, content_hash, locked

__all__ = ["Source", "fetch", "split_uri"]

_REMOTE = re.compile(r"^(https?|ssh|git|git\+ssh|file)://|^[\w.-]+@[\w.-]+:")


@dataclass(frozen=True)
class Source:
    """A fetched project: the folder to run in and what the run's tags say about it."""

    uri: str
    work_dir: str
    source_name: str
    git_commit: str | None = None
    git_branch: str | None = None
    git_repo_url: str | None = None
    #: A per-run checkout to delete when the run ends (None: the user's own folder).
    checkout: str | None = None

    def cleanup(self) -> None:
        if self.checkout:
            shutil.rmtree(self.checkout, ignore_errors=True)


def split_uri(uri: str) -> tuple[str, str]:
    """``(uri, subdirectory)`` from ``uri#subdirectory``; the subdirectory stays inside."""
    uri = uri.strip().strip("'\"")
    base, _, sub = uri.partition("#")
    sub = sub.rstrip("/")
    if sub and (os.path.isabs(sub) or ".." in sub.split("/")):
        raise InvalidParameterValue(
            f"Project subdirectory '{sub}' must be a relative path inside the project "
            "(no '..', not absolute)."
        )
    return base, sub


def _git(*args: str, cwd: str | None = None, check: bool = True) -> str:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise InvalidParameterValue(
            "Running a git project needs the 'git' command: install git (e.g. apt-get "
            "install git) or pass a local folder."
        ) from None
    if check and proc.returncode != 0:
        raise _GitError(proc.stderr.strip() or proc.stdout.strip())
    return proc.stdout.strip()


class _GitError(Exception):
    pass


def _git_info(folder: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(commit, branch, remote URL, top level) of the work tree holding ``folder``."""
    try:
        top = _git("rev-parse", "--show-toplevel", cwd=folder)
    except _GitError:
        return None, None, None, None
    commit = _git("rev-parse", "--verify", "--quiet", "HEAD", cwd=folder, check=False) or None
    branch = _git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=folder, check=False) or None
    remote = _git("config", "--get", "remote.origin.url", cwd=folder, check=False) or None
    return commit, branch, remote, top


def _local_path(base: str) -> str | None:
    if base.startswith("file://"):
        return base[len("file://") :]
    if _REMOTE.match(base):
        return None
    return os.path.expanduser(base)


def fetch(uri: str, version: str | None = None) -> Source:
    """Make the project at ``uri`` available locally (see the module docstring)."""
    base, sub = split_uri(uri)
    local = _local_path(base)
    if local is not None and not os.path.exists(local):
        raise ResourceDoesNotExist(
            f"Project {base} does not exist: pass a project folder, a git repository path or "
            "a git URL (https://..., file://...)."
        )
    if local is not None and version is None and not base.startswith("file://"):
        return _in_place(uri, os.path.abspath(local), sub)
    repo_url = os.path.abspath(local) if local is not None else base
    if local is not None and _git_info(repo_url)[3] is None:
        raise InvalidParameterValue(
            f"--version {version} needs a git repository, and {base} is a plain folder: "
            "drop --version to run the folder as it is."
        )
    return _from_git(uri, repo_url, sub, version)


def _subfolder(root: str, sub: str, uri: str) -> str:
    path = os.path.join(root, sub) if sub else root
    if not os.path.isdir(path):
        raise ResourceDoesNotExist(f"Project {uri}: no subdirectory '{sub}' in the repository.")
    return path


def _in_place(uri: str, folder: str, sub: str) -> Source:
    work_dir = _subfolder(folder, sub, uri)
    commit, branch, remote, top = _git_info(work_dir)
    source_name = work_dir
    if remote and top:  # MLflow's convention: the repository URL, then #path inside it
        inside = os.path.relpath(work_dir, top)
        source_name = remote if inside == "." else f"{remote}#{inside}"
    return Source(uri, work_dir, source_name, commit, branch, remote)


def _from_git(uri: str, repo_url: str, sub: str, version: str | None) -> Source:
    bare = os.path.join(cache_dir("git"), content_hash(repo_url))
    with locked(bare + ".lock", f"the clone of {repo_url}"):
        try:
            if not os.path.isdir(bare):
                tmp = f"{bare}.tmp-{uuid.uuid4().hex[:8]}"
                try:
                    _git("clone", "--bare", "--quiet", repo_url, tmp)
                    os.replace(tmp, bare)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            elif not (version and _has_commit(bare, version)):
                _git(
                    "fetch", "--quiet", "--prune", "--force", "--tags", "origin",
                    "+refs/heads/*:refs/heads/*", cwd=bare,
                )  # fmt: skip
        except _GitError as exc:
            raise ResourceDoesNotExist(
                f"Could not fetch git repository {repo_url}: {exc}"
            ) from None
        ref = version or "HEAD"
        commit = _git(
            "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=bare, check=False
        )
        if not commit:
            raise ResourceDoesNotExist(
                f"Version '{version}' not found in git repository {repo_url}: pass a branch, "
                "tag or commit that exists there (git ls-remote lists them)."
            )
        if version is None:
            branch = _git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=bare, check=False)
        else:
            is_branch = _git(
                "rev-parse", "--verify", "--quiet", f"refs/heads/{version}", cwd=bare, check=False
            )
            branch = version if is_branch else ""
    checkout = tempfile.mkdtemp(prefix="run-", dir=cache_dir("checkouts"))
    try:
        _git("clone", "--shared", "--no-checkout", "--quiet", bare, checkout)
        _git("checkout", "--quiet", "--detach", commit, cwd=checkout)
        if os.path.isfile(os.path.join(checkout, ".gitmodules")):
            _git("submodule", "update", "--init", "--recursive", "--quiet", cwd=checkout)
        work_dir = _subfolder(checkout, sub, uri)
    except BaseException as exc:
        shutil.rmtree(checkout, ignore_errors=True)
        if isinstance(exc, _GitError):
            raise ResourceDoesNotExist(f"Could not check out {uri} at {commit}: {exc}") from None
        raise
    source_name = f"{repo_url}#{sub}" if sub else repo_url
    return Source(uri, work_dir, source_name, commit, branch or None, repo_url, checkout)


def _has_commit(bare: str, version: str) -> bool:
    if not re.fullmatch(r"[0-9a-f]{7,40}", version):
        return False  # a branch or tag name may have moved: fetch
    return bool(
        _git("rev-parse", "--verify", "--quiet", f"{version}^{{commit}}", cwd=bare, check=False)
    )
