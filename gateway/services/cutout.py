"""The SODA service (SODA 1.0 §3): one entry point for every sync cutout, whichever archive
cuts it.  It owns the policy around the archive's :meth:`~gateway.archive.Archive.cutout`:
the ``cutout`` permission hook, ``gateway_query_started`` and, in a ``finally``,
``gateway_query_finished`` with ``protocol="soda"`` (hooks never see credentials).
"""

from __future__ import annotations

from ..archive import Archive, Cutout, CutoutRequest
from ..faults import Fault, NotFoundFault
from ..uws.executor import JobContext


class CutoutService:
    def __init__(self, gw):
        self.gw = gw

    def find_image(self, dataset_id: str) -> tuple[Archive, dict]:
        """The archive with a local image ``dataset_id`` (its publisher DID, case-insensitive)
        and the image's ObsCore record.  Raises NotFoundFault."""
        for a in self.gw.image_archives():
            for r in a.image_records():
                if r["obs_publisher_did"].lower() == dataset_id.lower():
                    return a, r
        raise NotFoundFault(f"no dataset with ID {dataset_id}")

    def cutout(self, archive: Archive, request: CutoutRequest, actor) -> Cutout | None:
        """The cutout of ``request`` by ``archive`` for ``actor``; None when the region holds no
        data (SODA 1.0 §3.3: 204).  Raises Fault (403 when the permission hook refuses)."""
        queries = self.gw.queries
        queries._allowed(actor, "cutout", archive.name, request.id)
        query = {"ID": request.id, "region": request.region}
        queries.started(actor, "soda", archive.name, query)
        error, answer = None, None
        try:
            answer = archive.cutout(request, JobContext(None, actor, service_url=self.gw.url()))
            return answer
        except Exception as e:
            error = str(e) if isinstance(e, Fault) else f"internal error ({type(e).__name__})"
            raise
        finally:
            queries.finished(actor, "soda", archive.name, query, None, 0 if answer is None else 1, error=error)

    def job_runner(self, archive: Archive):
        """The UWS runner of ``archive``'s SODA async jobs (SODA 1.0 §3.1): the ``cutout``
        permission for each ID, then :meth:`~gateway.archive.Archive.soda_job` between
        ``query_started`` and ``query_finished`` (rows: the results written)."""
        queries = self.gw.queries

        def run(job, context, job_dir):
            for i in [v for k, v in job.parameters if k == "ID"]:
                queries._allowed(context.actor, "cutout", archive.name, i)
            query = dict(job.parameters)
            queries.started(context.actor, "soda", archive.name, query)
            error, results = None, []
            try:
                results = archive.soda_job(list(job.parameters), context, job_dir)
                return results
            except Exception as e:
                error = str(e) if isinstance(e, Fault) else f"internal error ({type(e).__name__})"
                raise
            finally:
                queries.finished(context.actor, "soda", archive.name, query, None, len(results), error=error)

        return run

    def links(self, archive: Archive, ids: list[str], actor) -> bytes:
        """The DataLink document ``archive`` writes for its own ``ids`` (DataLink 1.1 §3), each
        ID after the ``datalink`` permission hook."""
        for i in ids:
            self.gw.queries._allowed(actor, "datalink", archive.name, i)
        return archive.datalink(ids, actor, self.gw.url())
