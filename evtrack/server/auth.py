"""Optional authentication and the read-only mode.

* ``Auth(token=...)``: requests carry ``Authorization: Bearer <token>`` (what the mlflow
  client sends for ``MLFLOW_TRACKING_TOKEN``).
* ``Auth(users={"alice": "secret"})`` or :meth:`Auth.from_users_file`: HTTP basic auth
  (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``). A users file has one
  ``user:password`` or ``user:sha256:<hex digest of the password>`` per line; ``#``
  starts a comment.

Secrets are compared as SHA-256 digests with :func:`hmac.compare_digest`, so neither the
length nor the content of a secret leaks through timing. By default only writes need
credentials (reads stay open, as the issue asks); ``protect_reads=True`` guards every
route but ``/health`` and ``/version``. A missing or wrong credential is HTTP 401 with
``{"error_code": "UNAUTHENTICATED", …}`` and nothing is written.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

__all__ = ["Auth", "is_write"]

#: POST routes that only read (searches, SQL).
_READ_POSTS = (
    "/experiments/search",
    "/runs/search",
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

    def __post_init__(self) -> None:
        self._token = _digest(self.token) if self.token else None
        self._users: dict[str, bytes] = {}
        for user, secret in self.users.items():
            if secret.startswith("sha256:"):
                self._users[user] = bytes.fromhex(secret[len("sha256:") :])
            else:
                self._users[user] = _digest(secret)

    @classmethod
    def from_users_file(cls, path: str, **kwargs) -> Auth:
        users = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                user, sep, secret = line.partition(":")
                if not sep or not user:
                    raise ValueError(f"{path}: each line must be user:password")
                users[user] = secret
        return cls(users=users, **kwargs)

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
