"""UWS 1.1 (Universal Worker Service): asynchronous jobs for every protocol that needs them.

* :mod:`.job` — the job record and the phase state machine (UWS 1.1 §2.1.3).
* :mod:`.store` — :class:`JobStore`, job records in SQLAlchemy (SQLite file or PostgreSQL).
* :mod:`.executor` — who runs a job: :class:`InProcessExecutor` (threads in the gateway
  process) or :class:`HueyExecutor` (huey on Redis, workers on any host).
* :mod:`.service` — :class:`JobService`: creation, parameters, RUN/ABORT/DELETE, WAIT,
  destruction and execution-duration enforcement, crash recovery.
* :mod:`.xml` — the UWS 1.1 XML documents (job, job list, results, parameters).

The HTTP binding lives in :mod:`gateway.protocols.uws`.
"""

from .job import Job, Phase

__all__ = ["Job", "Phase"]
