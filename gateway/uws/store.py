"""Job records in a SQL database through SQLAlchemy Core.

One table ``uws_job`` holds the records; ``uws_executor`` holds one liveness row per running
gateway or worker process (used to find jobs whose process died: :meth:`JobStore.orphans`).
A SQLite file is the default; a PostgreSQL URL (``postgresql+psycopg://...``) lets several
gateway processes and workers on several hosts share jobs.  Every phase change is a
compare-and-set (``UPDATE ... WHERE phase IN (...)``), so concurrent RUN/ABORT/finish requests
from different processes never overwrite each other.
"""

from __future__ import annotations

import builtins
import json
from datetime import UTC as UTC_ZONE
from datetime import datetime, timedelta
from typing import overload

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from .job import Job, Phase, Result, utcnow

meta = sa.MetaData()
UTC = sa.DateTime(timezone=True)

jobs_t = sa.Table(
    "uws_job",
    meta,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("service", sa.String(32), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False, index=True),
    sa.Column("run_id", sa.Text),
    sa.Column("owner_id", sa.Text),
    sa.Column("owner_key", sa.String(128), index=True),
    sa.Column("quote", UTC),
    sa.Column("creation_time", UTC, nullable=False, index=True),
    sa.Column("start_time", UTC),
    sa.Column("end_time", UTC),
    sa.Column("execution_duration", sa.Integer, nullable=False),
    sa.Column("destruction", UTC, index=True),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("uploads", sa.Text, nullable=False),
    sa.Column("results", sa.Text, nullable=False),
    sa.Column("error_message", sa.Text),
    sa.Column("error_type", sa.String(16)),
    sa.Column("executor_id", sa.String(128), index=True),
    sa.Column("service_url", sa.Text),
    sa.Column("job_info", sa.Text),
)

executors_t = sa.Table(
    "uws_executor",
    meta,
    sa.Column("executor_id", sa.String(128), primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("heartbeat", UTC, nullable=False),
)


@overload
def _aware(t: datetime) -> datetime: ...
@overload
def _aware(t: None) -> None: ...
def _aware(t: datetime | None) -> datetime | None:
    if t is not None and t.tzinfo is None:  # SQLite keeps no zone: stored values are UTC
        return t.replace(tzinfo=UTC_ZONE)
    return t


def _row_to_job(r) -> Job:
    return Job(
        job_id=r.job_id,
        service=r.service,
        phase=r.phase,
        run_id=r.run_id,
        owner_id=r.owner_id,
        owner_key=r.owner_key,
        quote=_aware(r.quote),
        creation_time=_aware(r.creation_time),
        start_time=_aware(r.start_time),
        end_time=_aware(r.end_time),
        execution_duration=r.execution_duration,
        destruction=_aware(r.destruction),
        parameters=[tuple(p) for p in json.loads(r.parameters)],
        uploads=json.loads(r.uploads),
        results=[Result(**x) for x in json.loads(r.results)],
        error_message=r.error_message,
        error_type=r.error_type,
        executor_id=r.executor_id,
        service_url=r.service_url,
        job_info=json.loads(r.job_info) if r.job_info else None,
    )


def _encode(fields: dict) -> dict:
    out = dict(fields)
    if "parameters" in out:
        out["parameters"] = json.dumps([list(p) for p in out["parameters"]])
    if "uploads" in out:
        out["uploads"] = json.dumps(out["uploads"])
    if "results" in out:
        out["results"] = json.dumps([r.__dict__ for r in out["results"]])
    if out.get("job_info") is not None:
        out["job_info"] = json.dumps(out["job_info"])
    return out


class JobStore:
    """Persistent job records.  ``url`` is a SQLAlchemy database URL.  Raises
    :class:`sqlalchemy.exc.SQLAlchemyError` when the database is unreachable."""

    def __init__(self, url: str):
        kw: dict = {"future": True}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"timeout": 30, "check_same_thread": False}
            kw["poolclass"] = NullPool
        else:
            kw["pool_pre_ping"] = True
        self.engine = sa.create_engine(url, **kw)
        if url.startswith("sqlite"):

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn, _):
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        meta.create_all(self.engine)
        with self.engine.begin() as c:  # a job store made before a column existed gets it added
            have = {col["name"] for col in sa.inspect(c).get_columns("uws_job")}
            for col in jobs_t.columns:
                if col.name not in have:
                    c.execute(sa.text(f"ALTER TABLE uws_job ADD COLUMN {col.name} {col.type.compile(c.dialect)}"))

    # -- jobs ---------------------------------------------------------------------------
    def insert(self, job: Job) -> None:
        fields = {k: getattr(job, k) for k in jobs_t.c.keys()}
        with self.engine.begin() as c:
            c.execute(jobs_t.insert().values(**_encode(fields)))

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as c:
            r = c.execute(jobs_t.select().where(jobs_t.c.job_id == job_id)).first()
        return _row_to_job(r) if r is not None else None

    def phase(self, job_id: str) -> str | None:
        with self.engine.connect() as c:
            return c.execute(sa.select(jobs_t.c.phase).where(jobs_t.c.job_id == job_id)).scalar()

    def update(self, job_id: str, only_in: tuple[str, ...] | None = None, **fields) -> bool:
        """Set ``fields``; if ``only_in`` is given, only while the phase is one of those.
        Returns whether the job was updated (compare-and-set)."""
        q = jobs_t.update().where(jobs_t.c.job_id == job_id)
        if only_in is not None:
            q = q.where(jobs_t.c.phase.in_(only_in))
        with self.engine.begin() as c:
            return c.execute(q.values(**_encode(fields))).rowcount == 1

    def delete(self, job_id: str) -> bool:
        with self.engine.begin() as c:
            return c.execute(jobs_t.delete().where(jobs_t.c.job_id == job_id)).rowcount == 1

    def list(
        self,
        service: str | None,
        owner_key: str | None,
        phases: builtins.list[str] | None = None,
        after: datetime | None = None,
        last: int | None = None,
        any_owner: bool = False,
    ) -> builtins.list[Job]:
        """Jobs of ``service`` (None: every service) owned by ``owner_key`` (None: anonymous jobs;
        ``any_owner``: all, for operators), filtered per UWS 1.1 §2.2.1.1: ``phases`` (union; ARCHIVED only when
        asked), ``after`` (creationTime), ``last`` (the n most recent, newest first)."""
        t = jobs_t
        q = sa.select(t)
        if service is not None:
            q = q.where(t.c.service == service)
        if not any_owner:
            q = q.where(t.c.owner_key.is_(None) if owner_key is None else t.c.owner_key == owner_key)
        if phases:
            q = q.where(t.c.phase.in_(phases))
        else:
            q = q.where(t.c.phase != Phase.ARCHIVED)
        if after is not None:
            q = q.where(t.c.creation_time > after)
        if last is not None:
            q = q.order_by(t.c.creation_time.desc(), t.c.job_id.desc()).limit(last)
        else:
            q = q.order_by(t.c.creation_time, t.c.job_id)
        with self.engine.connect() as c:
            return [_row_to_job(r) for r in c.execute(q)]

    def expired(self, now: datetime | None = None) -> builtins.list[str]:
        """Ids of jobs whose destruction time has passed (UWS 1.1 §2.2.3.3)."""
        now = now or utcnow()
        with self.engine.connect() as c:
            return list(c.execute(sa.select(jobs_t.c.job_id).where(jobs_t.c.destruction <= now)).scalars())

    def ping(self) -> None:
        """Raise if the store does not answer a query (readiness, ``/readyz``)."""
        with self.engine.connect() as c:
            c.execute(sa.text("SELECT 1"))

    def count_active(self, owner_key: str | None) -> int:
        """QUEUED or EXECUTING jobs of one owner (anonymous: ``None``, one pool)."""
        owner = jobs_t.c.owner_key.is_(None) if owner_key is None else jobs_t.c.owner_key == owner_key
        with self.engine.connect() as c:
            q = sa.select(sa.func.count()).select_from(jobs_t).where(owner, jobs_t.c.phase.in_(Phase.ACTIVE))
            return int(c.execute(q).scalar_one())

    def count_by_phase(self) -> dict[str, int]:
        """How many jobs the store holds in each phase (``vo_gateway_jobs``)."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(jobs_t.c.phase, sa.func.count()).group_by(jobs_t.c.phase))
            return {str(phase): int(n) for phase, n in rows}

    def active_on(self, executor_id: str) -> builtins.list[Job]:
        with self.engine.connect() as c:
            rows = c.execute(
                jobs_t.select().where(jobs_t.c.executor_id == executor_id, jobs_t.c.phase.in_(Phase.ACTIVE))
            )
            return [_row_to_job(r) for r in rows]

    # -- executors (liveness) -------------------------------------------------------------
    def beat(self, executor_id: str, host: str, pid: int) -> None:
        now = utcnow()
        with self.engine.begin() as c:
            n = c.execute(
                executors_t.update().where(executors_t.c.executor_id == executor_id).values(heartbeat=now)
            ).rowcount
            if n == 0:
                c.execute(executors_t.insert().values(executor_id=executor_id, host=host, pid=pid, heartbeat=now))

    def prune(self, older_than: float) -> None:
        """Forget liveness rows not renewed for ``older_than`` seconds (processes long gone;
        their jobs count as orphans either way)."""
        limit = utcnow() - timedelta(seconds=older_than)
        with self.engine.begin() as c:
            c.execute(executors_t.delete().where(executors_t.c.heartbeat < limit))

    def retire(self, executor_id: str) -> None:
        with self.engine.begin() as c:
            c.execute(executors_t.delete().where(executors_t.c.executor_id == executor_id))

    def orphans(self, stale_after: float, is_dead) -> builtins.list[tuple[Job, str]]:
        """Active jobs whose executor process is gone: its liveness row is missing, older than
        ``stale_after`` seconds, or ``is_dead(host, pid)`` says so.  Returns (job, executor)."""
        limit = utcnow() - timedelta(seconds=stale_after)
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(jobs_t, executors_t.c.host, executors_t.c.pid, executors_t.c.heartbeat)
                .select_from(jobs_t.outerjoin(executors_t, jobs_t.c.executor_id == executors_t.c.executor_id))
                .where(jobs_t.c.phase.in_(Phase.ACTIVE), jobs_t.c.executor_id.is_not(None))
            ).all()
        out = []
        for r in rows:
            if (
                r.host is None
                or r.heartbeat is None
                or _aware(r.heartbeat) < limit
                or is_dead(r.host, r.pid, r.executor_id)
            ):
                out.append((_row_to_job(r), f"{r.host}:{r.pid}" if r.host else r.executor_id))
        return out

    def close(self) -> None:
        self.engine.dispose()
