"""The SODA service (SODA 1.0 §3): one entry point for every sync cutout, whichever archive
cuts it.  It owns the policy around the archive's :meth:`~gateway.archive.Archive.cutout`:
the ``cutout`` permission hook, ``gateway_query_started`` and, in a ``finally``,
``gateway_query_finished`` with ``protocol="soda"`` (hooks never see credentials).
"""

from __future__ import annotations

from ..archive import Archive, Cutout, CutoutRequest
from ..dali import Params
from ..faults import NotFoundFault
from ..formats.datalink import links_document, soda_descriptor
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
        queries.check_permission(actor, "cutout", archive.name, request.id)
        with queries.hooked(actor, "soda", archive.name, {"ID": request.id, "region": request.region}) as tally:
            answer = archive.cutout(request, JobContext(None, actor, service_url=self.gw.url()))
            tally.rows = 0 if answer is None else 1
        return answer

    def job_runner(self, archive: Archive):
        """The UWS runner of ``archive``'s SODA async jobs (SODA 1.0 §3.1): the ``cutout``
        permission for each ID, then :meth:`~gateway.archive.Archive.soda_job` between
        ``query_started`` and ``query_finished`` (rows: the results written)."""
        queries = self.gw.queries

        def run(job, context, job_dir):
            for i in [v for k, v in job.parameters if k == "ID"]:
                queries.check_permission(context.actor, "cutout", archive.name, i)
            query = Params(list(job.parameters)).as_dict()  # every ID and region kept
            with queries.hooked(context.actor, "soda", archive.name, query) as tally:
                results = archive.soda_job(list(job.parameters), context, job_dir)
                tally.rows = len(results)
            return results

        return run

    def links(self, archive: Archive, ids: list[str], actor) -> str:
        """The DataLink document (DataLink 1.1 §3) of ``archive`` for its own ``ids``, each ID
        after the ``datalink`` permission hook: the archive's :class:`~gateway.archive.Link`
        rows, the descriptors of its SODA services the rows name (with its ``soda_params``;
        async too where it runs SODA jobs), and the descriptors it gives itself."""
        for i in ids:
            self.gw.queries.check_permission(actor, "datalink", archive.name, i)
        answer = archive.links(ids, JobContext(None, actor, service_url=self.gw.url()))
        named = {lk.service_def for lk in answer.rows}
        descriptors = ""
        if named & {"soda", "soda-async"}:
            base = self.gw.url(f"soda/{archive.name}")
            descriptors += soda_descriptor(base + "/sync", extra_params=archive.soda_params)
            if archive.capabilities.soda_async:
                descriptors += soda_descriptor(base + "/async", "soda-async", "async", archive.soda_params)
        return links_document(answer.rows, descriptors + "".join(answer.descriptors))
