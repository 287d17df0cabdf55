"""The UWS job record and its phases (UWS 1.1 §2.1.3, §2.2.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


class Phase:
    """UWS 1.1 §2.1.3 execution phases."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"

    ALL = (PENDING, QUEUED, EXECUTING, COMPLETED, ERROR, ABORTED, UNKNOWN, HELD, SUSPENDED, ARCHIVED)
    ACTIVE = (QUEUED, EXECUTING)
    #: phases a blocking WAIT waits in (UWS 1.1 §2.2.1.1)
    WAITABLE = (PENDING, QUEUED, EXECUTING)
    #: phases that can still be aborted
    ABORTABLE = (PENDING, QUEUED, EXECUTING, HELD, SUSPENDED)
    FINAL = (COMPLETED, ERROR, ABORTED, ARCHIVED)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def isoformat(t: datetime | None) -> str:
    """UWS/DALI time: ISO 8601 with ``T`` and a trailing ``Z`` (UWS 1.1 §2.2.2; DALI 1.1 §3.3.3)."""
    if t is None:
        return ""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse a DALI timestamp (``YYYY-MM-DD['T'hh:mm:ss[.fff]]['Z']``) as UTC.  Raises ValueError."""
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1]
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is not None:
        try:
            dt = dt.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise ValueError(f"{text!r} is outside the years 1-9999 in UTC")
    return dt.replace(tzinfo=UTC)


@dataclass
class Result:
    """One entry of ``{job}/results`` (TAP fixes the id ``result``; TAP 1.1 §2.2.2)."""

    id: str
    mime: str
    path: str
    size: int = 0
    rows: int = 0


@dataclass
class Job:
    """A UWS job.  ``parameters`` keeps (NAME, value) pairs in POST order with names upper-cased
    (TAP parameter names are case-insensitive, DALI 1.1 §3.1); ``owner_key`` identifies the
    owner for access checks and is never shown; ``uploads`` maps inline (``param:``) parts to
    files in the job directory."""

    job_id: str
    service: str
    phase: str = Phase.PENDING
    run_id: str | None = None
    owner_id: str | None = None
    owner_key: str | None = None
    quote: datetime | None = None
    creation_time: datetime = field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None
    execution_duration: int = 0
    destruction: datetime | None = None
    parameters: list[tuple[str, str]] = field(default_factory=list)
    uploads: dict[str, str] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    error_message: str | None = None
    error_type: str | None = None
    executor_id: str | None = None
    service_url: str | None = None  # the gateway's external root when the job was created
    job_info: dict | None = None  # what the running query reports (uws:jobInfo): progress, plan

    def param(self, name: str) -> str | None:
        vals = [v for k, v in self.parameters if k == name.upper()]
        return vals[-1] if vals else None
