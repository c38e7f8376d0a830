"""Where a run comes from: MLflow's system tags, and generated run names."""

from __future__ import annotations

import getpass
import os
import random
import sys

from evtrack import settings

__all__ = ["generate_run_name", "git_commit", "system_tags", "user_name"]

_ADJECTIVES = (
    "able amazing bold brave bright calm casual clean clever cool crisp curious dapper "
    "eager fearless funny gentle glamorous grand handsome honest intelligent invincible "
    "judicious kindly learned likeable luxuriant merciful mysterious nimble polite "
    "powerful resilient rumbling salty secretive sedate serious shivering silent skillful "
    "smiling sneaky spiffy stately suave tasteful thundering traveling unique upbeat "
    "valuable victorious vigorous wise worried youthful zealous"
).split()
_NOUNS = (
    "ant ape asp auk bass bat bear bee bird boar bug calf carp cat cod colt conch cow "
    "crab crane croc crow cub deer doe dog dolphin dove duck eel elk finch fish flea "
    "fly foal fowl fox frog gnat gnu goat goose gull hare hawk hen hog horse hound jay "
    "kit kite koi lamb lark loon lynx mare midge mink mole moose moth mouse mule newt "
    "owl ox panda penguin perch pig pony robin roo seal shad shark sheep shrew skink "
    "slug snail snake squid stag stork swan toad trout turtle vole wasp whale wolf "
    "worm wren yak zebra"
).split()


def generate_run_name() -> str:
    """A readable name like MLflow's (``bold-owl-417``)."""
    rng = random.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randint(0, 999)}"


def user_name() -> str:
    configured = settings.get("user")
    if configured:
        return configured
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


def git_commit(path: str) -> str | None:
    """The commit checked out in the git work tree containing ``path``, read from .git."""
    folder = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path) or ".")
    while True:
        dotgit = os.path.join(folder, ".git")
        if os.path.isdir(dotgit):
            return _read_head(dotgit)
        if os.path.isfile(dotgit):  # a worktree or submodule: "gitdir: <path>"
            with open(dotgit) as f:
                line = f.read().strip()
            if line.startswith("gitdir:"):
                return _read_head(os.path.join(folder, line[len("gitdir:") :].strip()))
            return None
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _read_head(gitdir: str) -> str | None:
    try:
        with open(os.path.join(gitdir, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head[len("ref:") :].strip()
        ref_file = os.path.join(gitdir, ref)
        if os.path.isfile(ref_file):
            with open(ref_file) as f:
                return f.read().strip() or None
        common = gitdir
        commondir = os.path.join(gitdir, "commondir")
        if os.path.isfile(commondir):
            with open(commondir) as f:
                common = os.path.join(gitdir, f.read().strip())
        packed = os.path.join(common, "packed-refs")
        if os.path.isfile(packed):
            with open(packed) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0]
    except OSError:
        return None
    return None


def system_tags() -> dict[str, str]:
    """MLflow's system tags for a run started from this process."""
    source = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else "<console>"
    tags = {
        "mlflow.user": user_name(),
        "mlflow.source.name": source,
        "mlflow.source.type": "LOCAL",
    }
    commit = git_commit(source) if sys.argv and sys.argv[0] else None
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags
