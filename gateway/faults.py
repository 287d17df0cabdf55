"""DALI faults: the exceptions every layer raises and every protocol renders.

The names follow DALI 1.1 §4.2 / SIA 2.0 §4 / DataLink 1.1 §3.4 error vocabularies
(``UsageFault``, ``TransientFault``, ``FatalFault``, ``NotFoundFault``).  Each protocol renderer
maps a fault onto its own document shape and HTTP status (``gateway.protocols.errors``).
"""

from __future__ import annotations

import contextlib


class Fault(Exception):
    """Base class.  ``status`` is the HTTP status for sync responses; ``position`` is an
    optional ``(line, column)`` of the offending ADQL token (1-based)."""

    label = "DefaultFault"
    status = 500

    def __init__(
        self,
        message: str,
        *,
        position: tuple[int, int] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.position = position
        self.headers = headers or {}  # e.g. WWW-Authenticate on a 401
        if status is not None:
            self.status = status

    def __str__(self) -> str:  # message with the position, as users see it
        if self.position:
            return f"{self.message} (line {self.position[0]}, column {self.position[1]})"
        return self.message


class UsageFault(Fault):
    """The client's request is wrong (bad parameter, bad ADQL, unknown table): HTTP 400."""

    label = "UsageFault"
    status = 400


class NotFoundFault(UsageFault):
    """A named resource (table, image ID, job) does not exist: HTTP 404."""

    label = "NotFoundFault"
    status = 404


class MultiValuedFault(UsageFault):
    """A service that takes one value got several (DALI 1.1 §3.1; SODA 1.0 §3.1
    ``MultiValuedParamNotSupported``): HTTP 400."""

    label = "MultiValuedParamNotSupported"


class TransientFault(Fault):
    """An upstream or resource is temporarily unavailable; retrying later may work: HTTP 503."""

    label = "TransientFault"
    status = 503


class RateLimitFault(TransientFault):
    """The caller used up a limit (``limits`` in config.yaml): HTTP 429 with ``Retry-After``
    (RFC 6585 §4); retrying after that many seconds works."""

    status = 429


class FatalFault(Fault):
    """The service failed in a way that retrying will not fix: HTTP 500."""

    label = "FatalFault"
    status = 500


@contextlib.contextmanager
def naming_archive(archive: str):
    """Within this block, an upstream failure (:class:`TransientFault`) names the archive it
    came from, as users know it: ``archive mast: upstream mast.stsci.edu failed: HTTP 502 ...``.
    The fault keeps its class, status and headers.  Upstream calls made within are counted
    under the archive's name (:mod:`gateway.ops`)."""
    from .ops import ARCHIVE

    token = ARCHIVE.set(archive)
    try:
        yield
    except TransientFault as f:
        if f"archive {archive}" not in f.message:
            f.message = f"archive {archive}: {f.message}"
            f.args = (f.message,)
        raise
    finally:
        ARCHIVE.reset(token)


def naming_batches(batches, archive: str):
    """``batches`` (an iterator of an archive's RowStream), each one produced within
    :func:`naming_archive`: a failure while the rows stream names the archive too."""
    it = iter(batches)
    try:
        while True:
            with naming_archive(archive):
                try:
                    batch = next(it)
                except StopIteration:
                    return
            yield batch
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
