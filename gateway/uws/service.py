"""UWS 1.1 job policy, shared by every protocol with asynchronous jobs (UWS 1.1 §2).

:class:`JobService` owns creation and parameters (§2.2.3.1, §2.2.3.8: parameters only while
PENDING), phase changes (RUN → QUEUED at once, §2.2.3.2; ABORT), deletion (§2.2.3.6),
destruction and executionDuration (set, clamped, enforced: §2.2.3.3–4), blocking WAIT
(§2.2.1.1, capped by ``jobs.wait_max``), per-owner access (§2.2.3.9, 403 for other owners)
and crash recovery: every process beats a liveness row; jobs queued or running in a process
that died are set to ERROR with a message saying so.

Protocols register a runner per service: ``runners["tap"] = fn(job, context, job_dir) ->
[Result]``; it runs inside :meth:`execute`, in whichever process the executor chose.
"""

from __future__ import annotations

import builtins
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..faults import Fault, NotFoundFault, RateLimitFault, TransientFault, UsageFault
from ..ops import request_id
from .executor import Cancelled, Executor, HueyExecutor, InProcessExecutor, JobContext
from .job import Job, Phase, Result, parse_time, utcnow
from .store import JobStore

log = logging.getLogger("gateway.uws")

CONTROL = {"PHASE", "RUNID", "EXECUTIONDURATION", "DESTRUCTION", "ACTION"}
_LIVE: set[str] = set()  # executor ids of the job services running in this process


class ForbiddenFault(Fault):
    """UWS 1.1 §2.2.3: the operation is not allowed for this job, owner or phase: HTTP 403."""

    label = "ForbiddenFault"
    status = 403


def owner_of(actor) -> tuple[str | None, str | None]:
    """(ownerId shown, owner key used for access checks) of an actor dict (None: anonymous)."""
    if not actor:
        return None, None
    return str(actor["id"]), str(actor.get("key") or actor["id"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobService:
    """Jobs of one gateway (all services).  ``base_dir`` resolves relative paths of the config."""

    def __init__(self, cfg, base_dir: Path):
        self.cfg = cfg
        url = cfg.store
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and ":memory:" not in url:
            path = (Path(base_dir) / url[len("sqlite:///") :]).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{path}"
        self.results_dir = (Path(base_dir) / cfg.results_dir).resolve()
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(url)
        self.runners: dict[str, Callable[[Job, JobContext, Path], list[Result]]] = {}
        self.host = socket.gethostname()
        self.running: dict[str, JobContext] = {}
        #: QUEUED/EXECUTING jobs one owner may have (config ``limits.async_jobs_per_user``; 0: no cap)
        self.max_active_per_owner = 0
        self._actors: dict[str, object] = {}
        self.changed = threading.Condition()
        self._version = 0
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.executor: Executor | None = None

    # -- process life -------------------------------------------------------------------
    def start(self) -> None:
        """Start (once per process, also after a fork) the executor and the housekeeping
        thread: liveness beats, crash recovery, destruction, executionDuration and remote ABORT."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            if self._pid is not None:  # forked: connections and threads of the parent are not ours
                self.store.engine.dispose(close=False)
            self._pid = os.getpid()
            self.executor_id = f"{self.host}:{self._pid}:{secrets.token_hex(4)}"
            _LIVE.add(self.executor_id)
            if self.cfg.executor == "huey":
                if not self.cfg.queue_url:
                    raise ValueError("jobs.queue_url is required for executor: huey")
                self.executor = HueyExecutor(self.cfg.queue_url)
            else:
                self.executor = InProcessExecutor(self.cfg.workers)
            self.executor.bind(self.execute)  # type: ignore[union-attr]
            self.store.beat(self.executor_id, self.host, self._pid)
            self.recover()
            self._stop.clear()
            threading.Thread(target=self._housekeeping, name="uws-housekeeping", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        if self.executor is not None:
            self.executor.close()
        if self._pid == os.getpid():
            _LIVE.discard(self.executor_id)
            self.store.retire(self.executor_id)
        self.store.close()

    def _is_dead(self, host: str, pid: int, executor_id: str) -> bool:
        if executor_id in _LIVE:
            return False
        return host == self.host and (pid == self._pid or not _pid_alive(pid))

    def recover(self) -> None:
        """ERROR for jobs whose process is gone (UWS 1.1 §2.1.3: a job that cannot finish)."""
        stale = 3 * self.cfg.heartbeat + 10
        for job, where in self.store.orphans(stale, self._is_dead):
            msg = (
                f"the gateway process that was running this job ({where}) stopped unexpectedly "
                f"while the job was {job.phase}; no result was kept. Please submit the query again."
            )
            if self.store.update(
                job.job_id,
                only_in=Phase.ACTIVE,
                phase=Phase.ERROR,
                end_time=utcnow(),
                error_message=msg,
                error_type="transient",
            ):
                log.warning("job %s: %s", job.job_id, msg)
        self._notify()

    def _housekeeping(self) -> None:
        last_beat = last_sweep = 0.0
        while not self._stop.wait(0.25):
            try:
                now = time.monotonic()
                for job_id, ctx in list(self.running.items()):
                    if ctx.deadline is not None and now > ctx.deadline:
                        ctx.cancel("execution duration exceeded")
                    elif self.store.phase(job_id) in (None, Phase.ABORTED):
                        ctx.cancel("aborted")
                if now - last_beat >= self.cfg.heartbeat:
                    last_beat = now
                    self.store.beat(self.executor_id, self.host, self._pid or os.getpid())
                if now - last_sweep >= max(self.cfg.heartbeat, 5):
                    last_sweep = now
                    self.recover()
                    self.store.prune(3600)
                    for job_id in self.store.expired():
                        self.destroy(job_id)
            except Exception:  # noqa: BLE001 - keep the thread alive through a database hiccup
                log.exception("UWS housekeeping failed")

    def _notify(self) -> None:
        with self.changed:
            self._version += 1
            self.changed.notify_all()

    # -- access ---------------------------------------------------------------------------
    def get(self, service: str, job_id: str, actor) -> Job:
        """The job, checked for ownership.  Raises NotFoundFault (404) / ForbiddenFault (403)."""
        self.start()
        job = self.store.get(job_id)
        if job is None or job.service != service:
            raise NotFoundFault(f"no job {job_id}")
        if job.destruction is not None and job.destruction <= utcnow():
            self.destroy(job_id)
            raise NotFoundFault(f"no job {job_id} (destroyed at its destruction time)")
        _, key = owner_of(actor)
        if job.owner_key is not None and job.owner_key != key:
            raise ForbiddenFault(f"job {job_id} belongs to another user")
        return job

    def list(
        self, service: str, actor, phases: builtins.list[str], after: str | None, last: int | None
    ) -> builtins.list[Job]:
        self.start()
        bad = [p for p in phases if p not in Phase.ALL]
        if bad:
            raise UsageFault(f"unknown PHASE {bad[0]!r}; phases are {', '.join(Phase.ALL)}")
        try:
            after_t = parse_time(after) if after else None
        except ValueError:
            raise UsageFault(f"AFTER must be an ISO 8601 time, not {after!r}")
        _, key = owner_of(actor)
        jobs = self.store.list(service, None, phases, after_t, last)
        if key is not None:
            jobs = sorted(
                jobs + self.store.list(service, key, phases, after_t, last),
                key=lambda j: (j.creation_time, j.job_id),
                reverse=last is not None,
            )
            if last is not None:
                jobs = jobs[:last]
        return jobs

    # -- creation and parameters --------------------------------------------------------------
    def create(
        self, service: str, actor, params: builtins.list[tuple[str, str]], files: dict, service_url: str | None = None
    ) -> Job:
        """New PENDING job with ``params`` (job-control parameters applied, others stored);
        ``files`` maps inline upload part names to file objects.  Runs it if ``PHASE=RUN``."""
        self.start()
        owner_id, key = owner_of(actor)
        now = datetime.now(UTC)  # sub-second, so LAST orders jobs of one second correctly
        job = Job(
            job_id=secrets.token_hex(8),
            service=service,
            owner_id=owner_id,
            owner_key=key,
            creation_time=now,
            execution_duration=self.cfg.execution_duration_default,
            destruction=now + timedelta(seconds=self.cfg.destruction_default),
            service_url=service_url,
        )
        rid = request_id()
        if rid is not None:
            job.job_info = {"request_id": rid}  # the request that made it (X-Request-ID, docs/deployment.md)
        run = self._apply(job, params, files)
        self.store.insert(job)
        if run:
            self.run(job, actor)
        return self.store.get(job.job_id) or job

    def add_parameters(self, job: Job, actor, params: builtins.list[tuple[str, str]], files: dict) -> None:
        """POST to ``{job}`` or ``{job}/parameters``: only while PENDING (UWS 1.1 §2.2.3.8)."""
        fields = {p[0].upper() for p in params} - {"PHASE", "ACTION"}
        if (fields - CONTROL or files) and job.phase != Phase.PENDING:
            raise ForbiddenFault(f"parameters can only be changed while the job is PENDING (it is {job.phase})")
        run = self._apply(job, params, files)
        self.store.update(
            job.job_id,
            parameters=job.parameters,
            uploads=job.uploads,
            run_id=job.run_id,
            execution_duration=job.execution_duration,
            destruction=job.destruction,
        )
        if run:
            self.run(job, actor)

    def _apply(self, job: Job, params: builtins.list[tuple[str, str]], files: dict) -> bool:
        """Apply one request's parameters.  A name given again in a later request replaces its
        earlier values; values repeated within one request are all kept (multi-valued
        parameters such as SODA's ID, POS and CIRCLE, SODA 1.0 §3.2; single-valued ones are
        refused when the job runs, DALI 1.1 §3.2)."""
        run = False
        here: set[str] = set()
        for name, value in params:
            n = name.upper()
            if n == "PHASE":
                if value.upper() != "RUN":
                    raise UsageFault(f"PHASE={value} is not allowed when creating or changing a job; use PHASE=RUN")
                run = True
            elif n == "RUNID":
                job.run_id = value
            elif n == "EXECUTIONDURATION":
                job.execution_duration = self._duration(value)
            elif n == "DESTRUCTION":
                job.destruction = self._destruction(job, value)
            elif n == "UPLOAD":  # accumulates across POSTs (TAP 1.1 §2.7.6)
                job.parameters.append((n, value))
            elif n != "ACTION":
                if n not in here:
                    job.parameters = [(k, v) for k, v in job.parameters if k != n]
                    here.add(n)
                job.parameters.append((n, value))
        if files:
            updir = self.job_dir(job.job_id) / "uploads"
            updir.mkdir(parents=True, exist_ok=True)
            for part, f in files.items():
                path = updir / f"part{len(job.uploads)}"
                f.save(str(path))
                job.uploads[part] = str(path)
        return run

    def _duration(self, value: str) -> int:
        try:
            v = int(float(value))
        except (ValueError, OverflowError):  # OverflowError: inf, 1e999
            raise UsageFault(
                f"EXECUTIONDURATION must be a finite number of seconds (0 asks for the longest "
                f"allowed, {self.cfg.execution_duration_max} s), not {value!r}"
            )
        if v < 0:
            raise UsageFault("EXECUTIONDURATION must not be negative")
        return self.cfg.execution_duration_max if v == 0 else min(v, self.cfg.execution_duration_max)

    def _destruction(self, job: Job, value: str):
        try:
            t = parse_time(value)
        except ValueError:
            raise UsageFault(f"DESTRUCTION must be an ISO 8601 time such as 2030-01-01T00:00:00Z, not {value!r}")
        return min(t, job.creation_time + timedelta(seconds=self.cfg.destruction_max))

    def set_execution_duration(self, job: Job, value: str) -> None:
        self.store.update(job.job_id, execution_duration=self._duration(value))

    def set_destruction(self, job: Job, value: str) -> None:
        self.store.update(job.job_id, destruction=self._destruction(job, value))

    # -- phase changes --------------------------------------------------------------------
    def run(self, job: Job, actor) -> None:
        """PHASE=RUN: PENDING/HELD → QUEUED at once (UWS 1.1 §2.2.3.2) and hand to the executor.
        RUN on a queued or running job is a no-op; on a finished job it is refused (403)."""
        if job.phase in Phase.ACTIVE:
            return
        if self.max_active_per_owner and self.store.count_active(job.owner_key) >= self.max_active_per_owner:
            raise RateLimitFault(
                f"you have {self.max_active_per_owner} async jobs queued or running already "
                "(limits.async_jobs_per_user); wait for one to finish, or abort one, then RUN this job",
                headers={"Retry-After": "10"},
            )
        executor = self._executor()
        owner = self.executor_id if executor.local else None
        if not self.store.update(
            job.job_id, only_in=(Phase.PENDING, Phase.HELD), phase=Phase.QUEUED, executor_id=owner, error_message=None
        ):
            phase = self.store.phase(job.job_id)
            if phase in Phase.ACTIVE:
                return
            raise ForbiddenFault(f"job {job.job_id} is {phase}; it cannot be run again (create a new job)")
        if actor is not None and executor.local:
            self._actors[job.job_id] = actor  # in memory only: credentials never reach the store
        self._notify()
        executor.submit(job.job_id)

    def _executor(self) -> Executor:
        assert self.executor is not None, "JobService.start() was not called"
        return self.executor

    def abort(self, job: Job) -> None:
        """PHASE=ABORT (UWS 1.1 §2.2.3.2): stop the job; a finished job is left as it is."""
        if self.store.update(job.job_id, only_in=Phase.ABORTABLE, phase=Phase.ABORTED, end_time=utcnow()):
            ctx = self.running.get(job.job_id)
            if ctx is not None:
                ctx.cancel("aborted")
            self._notify()

    def destroy(self, job_id: str) -> None:
        """DELETE / destruction time: stop the job, remove its record, results and uploads."""
        self.store.update(job_id, only_in=Phase.ABORTABLE, phase=Phase.ABORTED, end_time=utcnow())
        ctx = self.running.get(job_id)
        if ctx is not None:
            ctx.cancel("deleted")
        self.store.delete(job_id)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        self._actors.pop(job_id, None)
        self._notify()

    def wait(self, job: Job, wait: int, phase: str | None) -> Job:
        """Blocking GET (UWS 1.1 §2.2.1.1): return when the phase changes or after ``wait``
        seconds (-1: the configured maximum), at once if the job is not PENDING/QUEUED/EXECUTING
        or not in ``phase``."""
        if job.phase not in Phase.WAITABLE or (phase is not None and job.phase != phase.upper()):
            return job
        cap = self.cfg.wait_max
        budget = cap if wait < 0 else min(wait, cap)
        end = time.monotonic() + budget
        while True:
            with self.changed:
                seen = self._version  # a change notified after this read is not lost
            if self.store.phase(job.job_id) != job.phase:
                break
            left = end - time.monotonic()
            if left <= 0:
                break
            with self.changed:  # local changes wake at once; other processes' within 0.1 s
                if self._version == seen:
                    self.changed.wait(min(0.1, left))
        return self.store.get(job.job_id) or job

    # -- execution ------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.results_dir / job_id

    def execute(self, job_id: str) -> None:
        """Run one job (called by the executor, in any process).  QUEUED → EXECUTING →
        COMPLETED | ERROR | ABORTED; the runner's faults become the job's error."""
        self.start()
        actor = self._actors.pop(job_id, None)
        job = self.store.get(job_id)
        if job is None:
            return
        deadline = time.monotonic() + job.execution_duration if job.execution_duration else None
        ctx = JobContext(job_id, actor, deadline, job.service_url)
        if not self.store.update(
            job_id, only_in=(Phase.QUEUED,), phase=Phase.EXECUTING, start_time=utcnow(), executor_id=self.executor_id
        ):
            return
        self.running[job_id] = ctx
        self._notify()
        done = threading.Event()
        threading.Thread(
            target=self._report, args=(job_id, ctx, done, job.job_info or {}), name=f"uws-info-{job_id}", daemon=True
        ).start()

        def info() -> dict:
            return {"job_info": {**(job.job_info or {}), **ctx.info()}} if ctx.info is not None else {}

        try:
            runner = self.runners[job.service]
            job_dir = self.job_dir(job_id)
            job_dir.mkdir(parents=True, exist_ok=True)
            results = runner(job, ctx, job_dir)
            ctx.check()
            done.set()
            self.store.update(
                job_id, only_in=(Phase.EXECUTING,), phase=Phase.COMPLETED, end_time=utcnow(), results=results, **info()
            )
        except Cancelled as c:
            msg = (
                None
                if str(c) == "aborted"
                else (
                    f"job stopped: {c} (executionDuration {job.execution_duration} s)"
                    if "duration" in str(c)
                    else f"job stopped: {c}"
                )
            )
            self.store.update(
                job_id,
                only_in=(Phase.EXECUTING,),
                phase=Phase.ABORTED,
                end_time=utcnow(),
                error_message=msg,
                error_type="fatal" if msg else None,
            )
        except Fault as f:
            done.set()
            self.store.update(
                job_id,
                only_in=(Phase.EXECUTING,),
                phase=Phase.ERROR,
                end_time=utcnow(),
                **info(),
                error_message=str(f),
                error_type="transient" if isinstance(f, TransientFault) else "fatal",
            )
        except OSError as e:  # job directory, uploads: the storage failed, not the query
            import errno

            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            log.error("job %s: results storage failed (%s)", job_id, e.strerror)
            self.store.update(
                job_id,
                only_in=(Phase.EXECUTING,),
                phase=Phase.ERROR,
                end_time=utcnow(),
                error_message="results storage is full; try again later"
                if full
                else f"results storage failed ({e.strerror or type(e).__name__})",
                error_type="transient",
            )
        except Exception as e:  # noqa: BLE001 - any failure ends in ERROR, never a stuck job
            log.exception("job %s failed", job_id)
            self.store.update(
                job_id,
                only_in=(Phase.EXECUTING,),
                phase=Phase.ERROR,
                end_time=utcnow(),
                error_message=f"internal error ({type(e).__name__}); the incident was logged",
                error_type="fatal",
            )
        finally:
            done.set()
            self.running.pop(job_id, None)
            self._notify()

    def _report(self, job_id: str, ctx: JobContext, done: threading.Event, base: dict) -> None:
        """Write what the running query reports into the job record every second, so the job
        document's ``uws:jobInfo`` (progress, plan) is never more than about 1 s old."""
        while not done.wait(1.0):
            if ctx.info is None:
                continue
            try:
                self.store.update(job_id, only_in=(Phase.EXECUTING,), job_info={**base, **ctx.info()})
            except Exception:  # noqa: BLE001 - a progress report never fails the job
                log.exception("job %s: progress report failed", job_id)
