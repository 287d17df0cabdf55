"""Running queries: MAXREC policy (DALI 1.1 §3.4.4, TAP 1.1 §2.7.4), planning (which archive
answers), permission and notification hooks.

Planning: a query's tables must all belong to one archive whose capabilities include full ADQL
pushdown; any other combination is refused with a message naming the archives involved.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

from ..adql import analyze
from ..archive import Archive, Cone, ImageQuery
from ..faults import Fault, UsageFault
from ..rowstream import RowStream

log = logging.getLogger("gateway.query")

LANGS = {"ADQL", "ADQL-2.0", "ADQL-2.1"}


@dataclass
class QueryResult:
    stream: RowStream
    archive: str


class QueryService:
    def __init__(self, gateway):
        self.gw = gateway

    def maxrec(self, requested: int | None) -> int:
        svc = self.gw.config.service
        if requested is None:
            return svc.maxrec_default
        return min(requested, svc.maxrec_hard)

    def _allowed(self, actor, action: str, archive: str, resource: str) -> None:
        ok = self.gw.pm.hook.gateway_permission_allowed(actor=actor, action=action, archive=archive, resource=resource)
        if ok is False:
            raise Fault(f"not allowed to {action} {resource}", status=403)

    def adql(self, lang: str | None, text: str | None, maxrec: int | None, actor=None) -> QueryResult:
        """Validate and run an ADQL query.  ``maxrec`` is the client's MAXREC (None: default)."""
        if lang is None:
            raise UsageFault("parameter LANG is required (LANG=ADQL)")
        if lang.upper() not in LANGS:
            raise UsageFault(f"unknown query language {lang!r}; this service accepts ADQL, ADQL-2.0, ADQL-2.1")
        if text is None:
            raise UsageFault("parameter QUERY is required")
        q = analyze(text, self.gw.catalogue)
        if len(q.archives) != 1:
            raise UsageFault("a query may not combine tables of different archives here "
                             f"({', '.join(sorted(q.archives))}); query each archive separately")
        name = next(iter(q.archives))
        archive = self.gw.catalogue.archives[name]
        if not archive.capabilities.full_adql:
            raise UsageFault(f"archive {name} does not accept ADQL queries")
        for t in q.tables:
            self._allowed(actor, "query", name, t.qualified_name)
        limit = self.maxrec(maxrec)
        native = archive.translate(q)
        self.gw.pm.hook.gateway_query_started(actor=actor, protocol="tap", archive=name, query=text)
        if limit == 0:
            stream = archive.execute(native, 0, top=None)
            stream.overflow = True
        else:
            stream = archive.execute(native, limit, top=q.top)
        return QueryResult(stream, name)

    def cone(self, archive: Archive, table, cone: Cone, maxrec: int | None, verb: int, actor=None) -> RowStream:
        self._allowed(actor, "cone", archive.name, table.qualified_name)
        self.gw.pm.hook.gateway_query_started(actor=actor, protocol="scs", archive=archive.name,
                                              query={"RA": cone.ra, "DEC": cone.dec, "SR": cone.radius})
        return archive.cone_search(table, cone, self.maxrec(maxrec), verb)

    def images(self, query: ImageQuery, actor=None) -> list[tuple[Archive, RowStream]]:
        out = []
        for archive in self.gw.image_archives():
            if query.collection and archive.config.image_collection not in query.collection:
                continue
            self._allowed(actor, "images", archive.name, archive.name)
            out.append((archive, archive.image_search(query)))
        return out

    def finished(self, actor, protocol, archive, query, stream: RowStream, rows: int):
        self.gw.pm.hook.gateway_query_finished(actor=actor, protocol=protocol, archive=archive, query=query,
                                               rows=rows, overflow=stream.overflow, error=stream.error)


def counting(chunks: Iterator[bytes], stream: RowStream, on_done) -> Iterator[bytes]:
    """Pass writer chunks through; when done, report rows written to ``on_done(rows)``."""
    rows = 0
    orig = stream.batches

    def count():
        nonlocal rows
        for b in orig:
            rows += b.num_rows
            yield b
    stream.batches = count()
    try:
        yield from chunks
    finally:
        stream.close()
        try:
            on_done(rows)
        except Exception:  # noqa: BLE001 - a notification hook must not break a response
            log.exception("gateway_query_finished hook failed")
