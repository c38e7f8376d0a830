"""Optional authentication and the read-only mode.

* ``Auth(token=...)``: requests carry ``Authorization: Bearer <token>`` (what the mlflow
  client sends for ``MLFLOW_TRACKING_TOKEN``).
* ``Auth(users={"alice": "secret"})`` or :meth:`Auth.from_users_file`: HTTP basic auth
  (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``). A users file has one
  ``user:password`` or ``user:sha256:<hex digest of the password>`` per line, optionally
  with a role after the user: ``user:read:…`` or ``user:write:…`` (the default is
  ``write``); ``#`` starts a comment. A ``read`` user may do everything but write
  (403 ``PERMISSION_DENIED``). Because of the role field, a password that itself starts
  with ``read:`` or ``write:`` must be given in its ``sha256:`` form.

Secrets are compared as SHA-256 digests with :func:`hmac.compare_digest`, so neither the
length nor the content of a secret leaks through timing. By default only writes need
credentials (reads stay open, as the issue asks); ``protect_reads=True`` guards every
route but ``/health`` and ``/version`` (the web view's pages included). ``protect_reads``
without a token or a user is refused (``ValueError``): it would start an open server that
looks closed. A missing or wrong credential is HTTP 401 with
``{"error_code": "UNAUTHENTICATED", …}`` and nothing is written.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

__all__ = ["ROLES", "Auth", "is_write"]

#: What a user may do: ``read`` (every GET and read-only POST) or ``write`` (everything).
ROLES = ("read", "write")

#: POST routes that only read (searches, SQL). ``logged-models/search`` is how the stock
#: MLflow 3 client resolves ``runs:/`` model URIs: without it a ``--read-only`` server or
#: a ``read`` user could not load a model.
_READ_POSTS = (
    "/experiments/search",
    "/runs/search",
    "/logged-models/search",
    "/experiments/search-datasets",
    "/api/evtrack/sql",
)


def is_write(method: str, path: str) -> bool:
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    return not (method == "POST" and path.endswith(_READ_POSTS))


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass
class Auth:
    token: str | None = None
    users: dict[str, str] = field(default_factory=dict)  # user -> password or sha256:<hex>
    protect_reads: bool = False
    roles: dict[str, str] = field(default_factory=dict)  # user -> "read" | "write"

    def __post_init__(self) -> None:
        if not self.token and not self.users:
            raise ValueError(
                "Authentication needs a token (--auth-token / EVTRACK_SERVER_AUTH_TOKEN) or a "
                "users file (--users-file); without one the server would be open to everyone."
            )
        for user, role in self.roles.items():
            if role not in ROLES:
                raise ValueError(f"User {user!r}: role must be one of {ROLES}, not {role!r}.")
        self._token = _digest(self.token) if self.token else None
        self._users: dict[str, bytes] = {}
        for user, secret in self.users.items():
            if secret.startswith("sha256:"):
                self._users[user] = bytes.fromhex(secret[len("sha256:") :])
            else:
                self._users[user] = _digest(secret)

    @classmethod
    def from_users_file(cls, path: str, **kwargs) -> Auth:
        users: dict[str, str] = {}
        roles: dict[str, str] = {}
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                user, sep, secret = line.partition(":")
                if not sep or not user:
                    raise ValueError(
                        f"{path}:{number}: each line must be user:password, "
                        "user:sha256:<hex>, or user:<read|write>:<password or sha256:hex>"
                    )
                role, sep, rest = secret.partition(":")
                if sep and role in ROLES:
                    roles[user], secret = role, rest
                users[user] = secret
        return cls(users=users, roles=roles, **kwargs)

    def may_write(self, user: str) -> bool:
        """Whether an authenticated user (``"token"`` for the bearer token) may write."""
        return self.roles.get(user, "write") == "write"

    def user_for(self, header: str | None) -> str | None:
        """The authenticated user for an ``Authorization`` header, or None."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self._token is not None:
            if hmac.compare_digest(_digest(value.strip()), self._token):
                return "token"
            return None
        if scheme == "basic" and self._users:
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except ValueError:
                return None
            user, sep, password = decoded.partition(":")
            expected = self._users.get(user)
            # Compare against a dummy digest for unknown users: same time either way.
            ok = hmac.compare_digest(_digest(password), expected or b"\0" * 32)
            return user if sep and ok and expected is not None else None
        return None
