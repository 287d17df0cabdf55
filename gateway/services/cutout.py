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
