"""Default actor: HTTP Basic credentials (RFC 7617), registered like a plugin (``trylast``, so
an authentication plugin's ``gateway_actor_from_request`` wins).

The gateway does not verify passwords itself (archives that need an account, such as HSC-SSP
or CADC, pass ``actor["credentials"]`` to their upstream, per request).  Ownership is therefore bound to the exact credentials: the
owner key is a slow salted hash (PBKDF2-SHA256) of user name and password, so someone who
sends another user's name with a different password sees none of that user's jobs.  The
password is never stored, logged or shown; only ``id`` (the user name) appears in ``ownerId``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from .hookspecs import hookimpl


@lru_cache(maxsize=1024)
def _key(username: str, password_digest: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", password_digest, b"vo-gateway-owner:" + username.encode(), 100_000).hex()


def owner_key(username: str, password: str) -> str:
    """Owner key of HTTP Basic credentials (hex string; deterministic on every host)."""
    return _key(username, hashlib.sha256(password.encode()).digest())


class Credentials:
    """A caller's user name and password, in memory for one request or in-process job only.
    Never printed (``repr`` hides the password), logged, stored or passed to hooks."""

    __slots__ = ("username", "password")

    def __init__(self, username: str, password: str):
        self.username = username
        self.password = password

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"

    def __reduce__(self):  # never pickled into a queue or a store
        raise TypeError("credentials are not serialisable")


def public(actor: dict | None) -> dict | None:
    """The actor without its credentials (what hooks and logs may see)."""
    if not actor:
        return actor
    return {k: v for k, v in actor.items() if k != "credentials"}


@hookimpl(trylast=True)
def gateway_actor_from_request(request):
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        return None
    password = auth.password or ""
    return {
        "id": auth.username,
        "key": owner_key(auth.username, password),
        "credentials": Credentials(auth.username, password),
    }
