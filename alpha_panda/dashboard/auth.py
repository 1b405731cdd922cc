"""Token auth for the dashboard: ``Authorization: Bearer <token>`` or a login cookie.

The cookie does not hold the token: it holds an HMAC-SHA256 of a fixed label
keyed by the token, so it is worthless once the token changes. Every
comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

COOKIE: Final = "alpha_panda_session"
_LABEL: Final = b"alpha-panda dashboard session v1"


class TokenAuth:
    """Checks a request's credentials against ``DASHBOARD_TOKEN``.

    An empty token accepts nobody (``serve`` refuses to start without one).
    """

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._session = hmac.new(self._token, _LABEL, hashlib.sha256).hexdigest().encode()

    def token_ok(self, candidate: str | None) -> bool:
        """Whether ``candidate`` is the token (constant time)."""
        if not self._token or candidate is None:
            return False
        return hmac.compare_digest(candidate.encode(), self._token)

    def session_cookie(self) -> str:
        """The cookie value a successful login sets."""
        return self._session.decode()

    def allowed(self, authorization: str | None, cookie: str | None) -> bool:
        """Whether a request with this ``Authorization`` header and session cookie may pass."""
        if not self._token:
            return False
        if authorization:
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() == "bearer" and self.token_ok(credential.strip()):
                return True
        return cookie is not None and hmac.compare_digest(cookie.encode(), self._session)
