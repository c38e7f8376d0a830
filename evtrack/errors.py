"""The one exception tree of evtrack.

Every error knows its MLflow-style ``error_code`` and the HTTP status the tracking
server answers with, so the same object serves Python callers, the CLI and REST::

    EvtrackError (Exception)                      INTERNAL_ERROR            500
    ├── InvalidParameterValue (ValueError)        INVALID_PARAMETER_VALUE   400
    │   └── InvalidFilter                         INVALID_PARAMETER_VALUE   400
    ├── BadRequest (ValueError)                   BAD_REQUEST               400
    ├── ResourceAlreadyExists                     RESOURCE_ALREADY_EXISTS   400
    ├── ResourceDoesNotExist (LookupError)        RESOURCE_DOES_NOT_EXIST   404
    │   ├── ExperimentNotFound
    │   ├── RunNotFound
    │   └── ArtifactNotFound (FileNotFoundError)
    ├── InvalidState                              INVALID_STATE             400
    ├── PermissionDenied (PermissionError)        PERMISSION_DENIED         403
    ├── SegmentRefused                            (the store's code)        400
    │   (a segment a store or server refused for good; the writer does not retry it)
    ├── StoreError                                INTERNAL_ERROR            500
    │   ├── StoreVersionError                     INTERNAL_ERROR            500
    │   └── MissingDependency (ImportError)       INTERNAL_ERROR            500
    ├── ExecutionError                            INTERNAL_ERROR            500
    │   (a project run that ended FAILED or KILLED: MLflow's ExecutionException)
    └── TransientError                            TEMPORARILY_UNAVAILABLE   503
        ├── StoreUnavailable (OSError)            TEMPORARILY_UNAVAILABLE   503
        └── ConcurrentUpdate                      ABORTED                   409

Every class says whether retrying the same call may succeed (``retryable``): only
:class:`TransientError` and its subclasses do (the network, throttling, a store that
kept changing under a read, a race lost to another writer). Everything else is
permanent: the input, the state or the installation must change first, so a queue that
retries must give up on it at once (the writer's queue does: see
:mod:`evtrack.store.log.writer`). One exception to "by class": an error rebuilt from a
server's answer (:mod:`evtrack.store.rest.transport`) carries that answer's HTTP status
and is retryable when it was 429 or 5xx, whatever its ``error_code`` (the server was
overloaded or failing, not the request wrong).

``MlflowException`` is an alias of :class:`EvtrackError`, so scripts written for
MLflow (``except mlflow.exceptions.MlflowException``) keep working with
``import evtrack as mlflow``.
"""

from __future__ import annotations

__all__ = [
    "ArtifactNotFound",
    "BadRequest",
    "EvtrackError",
    "ExecutionError",
    "ExecutionException",
    "ExperimentNotFound",
    "InvalidFilter",
    "InvalidParameterValue",
    "ConcurrentUpdate",
    "InvalidState",
    "MissingDependency",
    "MlflowException",
    "PermissionDenied",
    "ResourceAlreadyExists",
    "ResourceDoesNotExist",
    "RunNotFound",
    "SegmentRefused",
    "StoreError",
    "StoreUnavailable",
    "StoreVersionError",
    "TransientError",
    "error_for_code",
]


class EvtrackError(Exception):
    """Base of every error evtrack raises on purpose."""

    error_code = "INTERNAL_ERROR"
    http_status = 500
    #: Whether the same call may succeed if retried (see the module docstring).
    retryable = False

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code

    def get_http_status_code(self) -> int:
        """MLflow's method name for :attr:`http_status`."""
        return self.http_status

    def serialize_as_json(self) -> str:
        """The body MLflow's REST API answers with."""
        import json

        return json.dumps({"error_code": self.error_code, "message": self.message})


MlflowException = EvtrackError


class InvalidParameterValue(EvtrackError, ValueError):
    """A key, value, path, id or argument that breaks a documented rule."""

    error_code = "INVALID_PARAMETER_VALUE"
    http_status = 400


class InvalidFilter(InvalidParameterValue):
    """A search filter or order-by clause that does not parse."""


class BadRequest(EvtrackError, ValueError):
    """A request that is malformed as a whole (bad JSON, wrong types)."""

    error_code = "BAD_REQUEST"
    http_status = 400


class ResourceAlreadyExists(EvtrackError):
    """An experiment name that is taken, a run id reused on create."""

    error_code = "RESOURCE_ALREADY_EXISTS"
    http_status = 400


class ResourceDoesNotExist(EvtrackError, LookupError):
    """Something looked up by id, name or path is not in the store."""

    error_code = "RESOURCE_DOES_NOT_EXIST"
    http_status = 404


class ExperimentNotFound(ResourceDoesNotExist):
    """No experiment with that id or name."""


class RunNotFound(ResourceDoesNotExist):
    """No run with that id."""


class ArtifactNotFound(ResourceDoesNotExist, FileNotFoundError):
    """No artifact at that path."""


class InvalidState(EvtrackError):
    """The call is valid but not now (logging to a deleted or finished run...)."""

    error_code = "INVALID_STATE"
    http_status = 400


class PermissionDenied(EvtrackError, PermissionError):
    """A write to a read-only store or server, or a bad credential."""

    error_code = "PERMISSION_DENIED"
    http_status = 403


class StoreError(EvtrackError):
    """The store cannot be read or written as a whole."""


class StoreVersionError(StoreError):
    """The store was written by a newer, incompatible evtrack."""


class SegmentRefused(EvtrackError):
    """A store or server refused a segment for good; its events were not stored.

    ``error_code`` is the store's reason; ``events`` how many events the segment held.
    The writer does not retry it (see :mod:`evtrack.store.log.writer`).
    """

    http_status = 400
    retryable = False

    def __init__(self, message: str, error_code: str | None = None, events: int = 0) -> None:
        super().__init__(message, error_code)
        self.events = events


class MissingDependency(StoreError, ImportError):
    """A package the URI or feature needs is not installed; the message names the extra."""


class TransientError(EvtrackError):
    """A failure that may go away: retry the same call later."""

    error_code = "TEMPORARILY_UNAVAILABLE"
    http_status = 503
    retryable = True


class StoreUnavailable(TransientError, OSError):
    """The store or server did not answer, throttled, or kept changing under a read."""


class ConcurrentUpdate(TransientError):
    """Another writer won a race (e.g. published the same manifest version first)."""

    error_code = "ABORTED"
    http_status = 409


class ExecutionError(EvtrackError):
    """A project run (``evtrack run``, ``evtrack.projects.run``) ended FAILED or KILLED."""


ExecutionException = ExecutionError  # MLflow's name (mlflow.exceptions.ExecutionException)


_BY_CODE: dict[str, type[EvtrackError]] = {
    cls.error_code: cls
    for cls in (
        EvtrackError,
        InvalidParameterValue,
        BadRequest,
        ResourceAlreadyExists,
        ResourceDoesNotExist,
        InvalidState,
        PermissionDenied,
        TransientError,
        ConcurrentUpdate,
    )
}


def error_for_code(error_code: str, message: str) -> EvtrackError:
    """Rebuild the right exception from an ``error_code`` sent over HTTP."""
    cls = _BY_CODE.get(error_code, EvtrackError)
    return cls(message, error_code=error_code)
