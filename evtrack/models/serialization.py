"""How a model object becomes bytes: skops (safe), pickle or cloudpickle (run code on load).

skops is the default wherever it can represent the model: loading it never runs code,
and types outside skops' built-in allow-list must be named (``skops_trusted_types``)
or the load is refused with the list of types to review. pickle and cloudpickle can
hold any object but *execute code while loading*; evtrack loads them because MLflow's
models are mostly pickles, and says so once per process with a warning naming the file.
"""

from __future__ import annotations

import warnings
from typing import Any

from evtrack.errors import InvalidParameterValue

__all__ = ["FORMATS", "UnsafeModelFormatWarning", "dump", "load"]

SKOPS, PICKLE, CLOUDPICKLE = "skops", "pickle", "cloudpickle"
FORMATS = (SKOPS, PICKLE, CLOUDPICKLE)
FILE_NAMES = {SKOPS: "model.skops", PICKLE: "model.pkl", CLOUDPICKLE: "model.pkl"}


class UnsafeModelFormatWarning(UserWarning):
    """A model file whose format runs arbitrary code when it is loaded."""


_warned = False


def _warn_unsafe_once(path: str, fmt: str) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"Loading {path!r}, a {fmt} file: loading it runs any code the file contains. "
        "Only load models from sources you trust; save models with "
        "serialization_format='skops' to avoid this. (Shown once per process.)",
        UnsafeModelFormatWarning,
        stacklevel=3,
    )


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidParameterValue(
            f"Unrecognized serialization format: {fmt!r}. Use one of {list(FORMATS)}."
        )
    return fmt


def dump(obj: Any, path: str, fmt: str) -> None:
    check_format(fmt)
    if fmt == SKOPS:
        import skops.io

        skops.io.dump(obj, path)
        return
    if fmt == CLOUDPICKLE:
        import cloudpickle as pickler
    else:
        import pickle as pickler
    with open(path, "wb") as f:
        pickler.dump(obj, f)


def skops_can_represent(obj: Any) -> bool:
    """Whether skops can save ``obj`` and load it back with only skops' trusted types
    plus scikit-learn's, so the safe default never produces a model nobody can load."""
    try:
        import skops.io
    except ImportError:
        return False
    try:
        data = skops.io.dumps(obj)
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception:  # skops raises a variety of errors for objects it cannot hold
        return False
    return all(t.startswith(("sklearn.", "numpy.", "scipy.")) for t in untrusted)


def load(path: str, fmt: str, trusted_types: list[str] | None = None) -> Any:
    check_format(fmt)
    if fmt == SKOPS:
        import skops.io

        untrusted = skops.io.get_untrusted_types(file=path)
        # Types from scikit-learn, numpy and scipy are what skops saves for estimators;
        # anything else must be named by whoever saved the model.
        allowed = set(trusted_types or ())
        refused = [
            t
            for t in untrusted
            if t not in allowed and not t.startswith(("sklearn.", "numpy.", "scipy."))
        ]
        if refused:
            raise InvalidParameterValue(
                f"The skops file {path!r} holds types that are not trusted: {refused}. "
                "Review them and pass skops_trusted_types=[...] when saving the model."
            )
        return skops.io.load(path, trusted=list(untrusted))
    _warn_unsafe_once(path, fmt)
    if fmt == CLOUDPICKLE:
        import cloudpickle as pickler
    else:
        import pickle as pickler
    with open(path, "rb") as f:
        try:
            return pickler.load(f)
        except ModuleNotFoundError as exc:
            raise InvalidParameterValue(
                f"Loading {path!r} needs the Python module {exc.name!r}, which is not "
                "installed here: install it (the model's requirements.txt lists what it was "
                "saved with), or serve with --env-manager uv."
            ) from None
