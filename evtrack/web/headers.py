"""HTTP headers every response of the web view (and the server mounting it) carries.

* ``Content-Security-Policy``: pages load scripts, styles and images from the server
  only (:data:`PAGE_CSP`); anything else (JSON, CSV, errors) gets :data:`DATA_CSP`,
  which lets nothing run. ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``
  forbid framing (clickjacking).
* ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``.

:func:`apply` only *sets defaults*, so a view that chose a stricter policy (raw
artifacts are served with ``sandbox``) keeps it. It is an app-wide ``after_request``
hook, so 404s for unknown URLs and error pages carry the headers too.

:func:`content_disposition` builds an RFC 6266 ``attachment`` header: an ASCII
``filename`` fallback with quotes, backslashes and control characters replaced, plus
``filename*=UTF-8''…`` with the exact name percent-encoded (RFC 5987 attr-chars), so
a file name can never break out of the header's quoting.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from flask import Response

__all__ = ["DATA_CSP", "PAGE_CSP", "apply", "content_disposition"]

#: Pages may only load scripts, styles and images from the server itself: a value that
#: slipped past escaping still could not run inline script.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: Everything that is not a page: nothing in it may load or run anything.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

#: RFC 5987 attr-char, minus the alphanumerics quote() always keeps.
_ATTR_CHARS = "!#$&+-.^_`|~"


def apply(resp: Response) -> Response:
    """Add the security headers a response does not set itself."""
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    csp = PAGE_CSP if resp.mimetype == "text/html" else DATA_CSP
    resp.headers.setdefault("Content-Security-Policy", csp)
    return resp


def content_disposition(name: str, disposition: str = "attachment") -> str:
    """``attachment; filename="…"; filename*=UTF-8''…`` for any file name."""
    simple = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    simple = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in simple)
    simple = simple.strip() or "download"
    return f"{disposition}; filename=\"{simple}\"; filename*=UTF-8''{quote(name, safe=_ATTR_CHARS, errors='replace')}"
