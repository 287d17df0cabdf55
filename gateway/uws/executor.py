"""Who runs a job, behind one interface: ``submit(job_id)``.

* :class:`InProcessExecutor` (default): a thread pool inside the gateway process; nothing else to
  start.  A job queued here dies with its process; :class:`~gateway.uws.service.JobService`
  then reports it as ERROR (crash recovery).
* :class:`HueyExecutor`: a huey queue on Redis.  ``vo-gateway worker`` processes, on this or any
  other host sharing the job store and the results directory, take jobs from the queue.

Either way the job runs in :meth:`JobService.execute`, which gives the archive a
:class:`JobContext` so that upstream jobs (e.g. HSC-SSP catalog jobs) are cancelled on ABORT.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..faults import Fault

log = logging.getLogger("gateway.uws")


class Cancelled(Fault):
    """Raised inside a job or a sync query when it was aborted, ran past its execution
    duration or sync limit, or its client went away.  A Fault, so a writer that has begun
    reports it in-band (DALI 1.1 §4.4); HTTP 400 before the first byte (the query asked more
    than the service's limits allow)."""

    label = "UsageFault"
    status = 400


class JobContext:
    """What a running query sees: ``actor`` (the caller, with in-memory ``credentials`` if any)
    and, for a UWS job, ``job_id`` (None for a sync query).  ``cancelled`` is set on ABORT, on
    executionDuration overrun and at destruction; callbacks registered with :meth:`on_cancel`
    run once, then (archives use them to interrupt a database query or cancel an upstream job)."""

    def __init__(self, job_id: str | None, actor=None, deadline: float | None = None, service_url: str | None = None):
        self.job_id = job_id
        self.actor = actor
        self.service_url = service_url  # the gateway's external root, for links in results
        #: MIME type of the output format the result is written in (TAP 1.1 §2.7.4 RESPONSEFORMAT),
        #: so a producer that has the rows encoded so already can fill ``RowStream.encoded``
        self.response_format: str | None = None
        self.deadline = deadline
        self.cancelled = threading.Event()
        #: what the running query reports for the job document's ``uws:jobInfo`` (a JSON-ready
        #: dict: the federated planner's progress and plan); read every second while it runs
        self.info: Callable[[], dict] | None = None
        self.reason: str | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self.cancelled.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self.cancelled.is_set():
                return
            self.reason = reason
            self.cancelled.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb()
            except Exception:  # noqa: BLE001 - a failing cancel must not stop the others
                log.exception("cancel callback of job %s failed", self.job_id)

    def check(self) -> None:
        """Raise :class:`Cancelled` if the job must stop."""
        if self.cancelled.is_set():
            raise Cancelled(self.reason or "aborted")


class Executor:
    """Runs ``run(job_id)`` for submitted jobs.  ``local`` tells whether jobs run in this
    process (then the job is owned by this process's executor id while queued)."""

    local = True

    def bind(self, run: Callable[[str], None]) -> None:
        self._run = run

    def submit(self, job_id: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcessExecutor(Executor):
    """A thread pool of ``workers`` threads in the gateway process."""

    local = True

    def __init__(self, workers: int = 2):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="uws-job")

    def submit(self, job_id: str) -> None:
        self.pool.submit(self._run, job_id)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class HueyExecutor(Executor):
    """huey on Redis (``queue_url`` ``redis://host:port/db``).  The gateway only enqueues;
    ``vo-gateway worker`` consumes (:meth:`consume`)."""

    local = False

    def __init__(self, queue_url: str, name: str = "vo-gateway"):
        try:
            from huey import RedisHuey
        except ImportError:
            from ..config import ConfigError

            raise ConfigError("jobs.executor: huey needs the huey extra: pip install 'vo-gateway[huey]'") from None

        self.huey = RedisHuey(name, url=queue_url, results=False)

        def run_job(job_id: str) -> None:
            self._run(job_id)

        self.task = self.huey.task(name="vo_gateway.run_job")(run_job)

    def submit(self, job_id: str) -> None:
        self.task(job_id)

    def consume(self, workers: int) -> None:
        """Run a huey consumer with ``workers`` threads until SIGINT/SIGTERM."""
        consumer = self.huey.create_consumer(
            workers=workers, worker_type="thread", periodic=False, initial_delay=0.05, max_delay=0.5, backoff=1.15
        )
        consumer.run()

    def close(self) -> None:
        pass
