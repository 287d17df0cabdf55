"""Simple Cone Search 1.03 at ``/scs/{schema.table}`` for every positional table.

RA, DEC (ICRS degrees), SR (degrees; 0 returns metadata only, SCS 1.03 §2); VERB 1/2/3;
MAXREC (SCS 1.1 WD) honoured.  The id/RA/Dec columns carry the UCD1 names ``ID_MAIN``,
``POS_EQ_RA_MAIN``, ``POS_EQ_DEC_MAIN`` the standard requires, and the id is a string.
Errors are VOTables with ``INFO name="Error"`` (SCS 1.03 §3).
"""

from __future__ import annotations

import pyarrow as pa
from flask import Blueprint, Response, current_app

from ..archive import Cone
from ..dali import Params
from ..faults import Fault, NotFoundFault, UsageFault
from ..rowstream import RowStream
from .errors import scs_error

bp = Blueprint("scs", __name__)


def gw():
    return current_app.extensions["vo_gateway"]


@bp.route("/<name>", methods=["GET", "POST"])
def cone(name):
    try:
        found = gw().cone_table(name)
        if found is None:
            raise NotFoundFault(
                f"no positional table {name}; cone search is offered for: "
                + ", ".join(t.qualified_name for _, t in gw().positional_tables())
            )
        archive, table = gw().catalogue.archives[found[0]], found[1]
        p = Params.from_request()
        ra, dec, sr = (p.get_float(k, required=True) for k in ("RA", "DEC", "SR"))
        if not 0 <= ra <= 360:
            raise UsageFault(f"RA must be in [0, 360] degrees, got {ra}")
        if not -90 <= dec <= 90:
            raise UsageFault(f"DEC must be in [-90, 90] degrees, got {dec}")
        max_sr = gw().config.service.scs_max_sr
        if not 0 <= sr <= max_sr:
            raise UsageFault(f"SR must be in [0, {max_sr}] degrees, got {sr}")
        verb = p.get_int("VERB", 2)
        verb = min(max(verb, 1), 3)
        maxrec = p.get_int("MAXREC")
        fmt = gw().formats.lookup(p.get("RESPONSEFORMAT") or "votable/td")
        if fmt is None:
            raise UsageFault(f"unsupported RESPONSEFORMAT {p.get('RESPONSEFORMAT')!r}")
        # SR=0: the metadata, no rows (SCS 1.03 §2), through the same permission and hooks
        cone = Cone(ra % 360, dec, sr) if sr > 0 else Cone(ra % 360, dec, 1e-9)
        chunks = gw().queries.cone(
            archive,
            table,
            cone,
            maxrec if sr > 0 else 0,
            verb,
            gw().actor(),
            lambda stream: fmt.writer(scs_view(stream, table), [("standardID", "ivo://ivoa.net/std/ConeSearch")]),
        )
    except Fault as f:
        return scs_error(f)
    return Response(chunks, content_type="text/xml;content=x-votable" if fmt.is_votable else fmt.mime)


def scs_view(stream: RowStream, table) -> RowStream:
    """Relabel id/ra/dec with SCS 1.03 UCD1 names; the id becomes char (SCS 1.03 §3)."""
    ucd1 = {table.id_column: "ID_MAIN", table.ra_column: "POS_EQ_RA_MAIN", table.dec_column: "POS_EQ_DEC_MAIN"}
    cols = []
    for c in stream.columns:
        if c.name in ucd1:
            from dataclasses import replace

            if c.name == table.id_column:
                c = replace(c, ucd=ucd1[c.name], datatype="char", arraysize="*")
            else:
                c = replace(c, ucd=ucd1[c.name])
        cols.append(c)
    idx = [i for i, c in enumerate(stream.columns) if c.name == table.id_column]
    orig = stream.batches

    def batches():
        for b in orig:
            if idx and not pa.types.is_string(b.schema.types[idx[0]]):
                arrays = list(b.columns)
                arrays[idx[0]] = arrays[idx[0]].cast(pa.string())
                b = pa.RecordBatch.from_arrays(arrays, names=b.schema.names)
            yield b

    stream.columns = cols
    stream.batches = batches()
    return stream
