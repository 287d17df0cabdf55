"""Default actor: HTTP Basic credentials (RFC 7617), registered like a plugin (``trylast``, so
an authentication plugin's ``gateway_actor_from_request`` wins).

The gateway does not verify passwords itself (archives that need an account, such as HSC-SSP,
pass them to their upstream).  Ownership is therefore bound to the exact credentials: the
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


@hookimpl(trylast=True)
def gateway_actor_from_request(request):
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        return None
    return {"id": auth.username, "key": owner_key(auth.username, auth.password or "")}
