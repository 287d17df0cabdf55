"""Kind ``sdss``: the SDSS catalogues through SkyServer's SQL search (docs/upstreams.md §5), sent
the way ``astroquery.sdss`` sends them (``SDSS.query_sql``): ``GET
{skyserver}/{release}/en/tools/search/x_results.aspx`` with ``cmd`` (the SQL, on one line),
``format=csv`` and ``searchtool=SQL``.

* The kind scans (:meth:`SdssArchive.scan`); the federated planner does the rest of any ADQL
  query, joins of PhotoObj with SpecObj included.  A scan becomes one T-SQL statement:
  ``SELECT TOP n columns FROM dbo.Table AS t``, a cone as a join with SkyServer's
  ``dbo.fGetNearbyObjEq(ra, dec, r_arcmin)`` (``fGetNearbySpecObjEq`` for spectra) on the id,
  and the conditions, ``=``, ``IN``, comparisons and ``LIKE``, in ``WHERE``.  A scan with
  neither a cone nor an id condition (``objID``, ``specObjID``, ``bestObjID``) is refused:
  SkyServer's tables hold 10^8 to 10^9 rows.
* Answers are CSV after a ``#Table1`` line.  SkyServer reports SQL errors with HTTP 200 and
  ``error_message`` in the text; that becomes a 400 with SkyServer's own message.  When the
  answer has ``row_limit`` rows (SkyServer's cap), the answer is cut: OVERFLOW, never complete.
* ``objID`` and the other 64-bit ids are read as exact integers; ``specObjID`` as its digits.
"""

from __future__ import annotations

import io
import re
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pcsv
from pydantic import AnyHttpUrl, Field

from gateway.archive import Archive, ArchiveConfig, Capabilities, ScanRequest
from gateway.faults import TransientFault, UsageFault
from gateway.rowstream import RowStream
from gateway.schema import ARROW_TYPES, Table
from gateway.upstream import UpstreamSession, origin, upstream_get

from .metadata import TABLES, sdss_tables

RELEASES = ("dr12", "dr13", "dr14", "dr15", "dr16", "dr17", "dr18", "dr19")
SPECTRA = {name.lower() for name, (source, _, _) in TABLES.items() if source == "SpecObjAll"}


class SdssConfig(ArchiveConfig):
    release: Literal[RELEASES] = Field("dr17", description="SDSS data release (SkyServer path and schema name)")
    skyserver_url: AnyHttpUrl = Field("https://skyserver.sdss.org", description="SkyServer base URL")
    schema_name: str | None = Field(None, description="ADQL schema of the tables (default: sdss_<release>)")
    row_limit: int = Field(500_000, ge=1, description="SkyServer's row cap: an answer this long is cut (OVERFLOW)")
    timeout: float = Field(60.0, gt=0, description="seconds one read of a SkyServer answer may wait")
    deadline: float = Field(600.0, gt=0, description="seconds one SkyServer call may take in all")


def _literal(v) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, bool):
        return "1" if v else "0"
    return repr(v) if isinstance(v, float) else str(v)


def error_text(text: str) -> str:
    """SkyServer's error message from an answer that has ``error_message`` in it (HTML or text)."""
    plain = re.sub(r"<[^>]+>", " ", text)
    plain = re.sub(r"\s+", " ", plain).strip()
    i = plain.lower().find("error_message")
    return plain[i:][:500] if i >= 0 else plain[:500]


class SdssArchive(Archive):
    kind = "sdss"
    Config = SdssConfig
    capabilities = Capabilities(cone=True, comparisons=True, column_selection=True, top=True, bounded=True)

    def __init__(self, name, config: SdssConfig, *, base_dir):
        super().__init__(name, config, base_dir=base_dir)
        base = str(config.skyserver_url).rstrip("/")
        self.url = f"{base}/{config.release}/en/tools/search/x_results.aspx"
        self.session = UpstreamSession({origin(self.url)}, config.timeout, deadline=config.deadline)
        self.schema = config.schema_name or f"sdss_{config.release}"
        self._tables = sdss_tables(self.schema, config.release)

    def tables(self) -> list[Table]:
        return self._tables

    @property
    def title(self) -> str:
        return self.config.title or f"SDSS {self.config.release.upper()} (SkyServer SQL search)"

    # -- the SQL of a scan ------------------------------------------------------------------
    def sql(self, request: ScanRequest) -> str:
        """The T-SQL statement SkyServer runs for ``request`` (one line, as astroquery sends it).
        Raises UsageFault when the request has neither a cone nor an id condition."""
        t = request.table
        idc = t.id_column or "objid"
        keys = {idc} | {c for fk in t.foreign_keys for c in fk.from_columns}  # indexed ids (objID, bestObjID)
        spectra = t.name.lower() in SPECTRA
        wanted = request.columns or [idc]
        everything = {c.lower() for c in wanted} >= {c.name for c in t.columns}
        cols = "t.*" if everything else ", ".join(f"t.{c}" for c in wanted)
        top = f"TOP {request.limit} " if request.limit is not None else ""
        parts = [f"SELECT {top}{cols} FROM dbo.{t.name} AS t"]
        bounded = False
        if request.cone is not None:
            c = request.cone
            fn = "fGetNearbySpecObjEq" if spectra else "fGetNearbyObjEq"
            key = "specObjID" if spectra else "objID"
            parts.append(f"JOIN dbo.{fn}({c.ra!r}, {c.dec!r}, {c.radius * 60!r}) AS n ON n.{key} = t.{key}")
            bounded = True
        where = []
        for p in request.predicates:
            col = t.column(p.column)
            if col is None:
                continue
            name = f"t.{col.name}"
            if p.op == "IN":
                where.append(f"{name} IN ({', '.join(_literal(v) for v in p.value)})")
                bounded |= col.name in keys
            elif p.op in ("=", "!=", "<", "<=", ">", ">="):
                where.append(f"{name} {'<>' if p.op == '!=' else p.op} {_literal(p.value)}")
                bounded |= p.op == "=" and col.name in keys
            elif p.op == "LIKE":
                where.append(f"{name} LIKE {_literal(p.value)}")
        if not bounded:
            raise UsageFault(
                f"{t.qualified_name} is too large to scan: add a position, e.g. WHERE 1 = CONTAINS("
                f"POINT('ICRS', ra, dec), CIRCLE('ICRS', ra, dec, r)), or an id constraint such as {idc} = ..."
            )
        if where:
            parts.append("WHERE " + " AND ".join(where))
        if request.order:
            parts.append("ORDER BY " + ", ".join(f"t.{c}{' DESC' if d else ''}" for c, d in request.order))
        return " ".join(parts)

    def scan(self, request: ScanRequest, context=None) -> RowStream:
        """One SkyServer SQL search for ``request`` (module docstring): rows typed as the
        table declares them, OVERFLOW when SkyServer's row cap cut the answer."""
        sql = self.sql(request)
        r = upstream_get(
            self.session,
            "SkyServer",
            self.url,
            {"cmd": sql, "format": "csv", "searchtool": "SQL"},
            self.config.timeout,
            refused="the query",
        )
        text = r.text
        if "error_message" in text:
            raise UsageFault(f"SkyServer refused the query: {error_text(text)}")
        if not text.startswith("#Table1"):
            raise TransientFault(f"SkyServer answered something that is not a CSV table: {text[:200]!r}")
        body = text.split("\n", 1)[1] if "\n" in text else ""
        names = [c.strip().lower() for c in body.split("\n", 1)[0].split(",")] if body.strip() else []
        cols = [request.table.column(n) for n in names]
        if any(c is None for c in cols):
            raise TransientFault(f"SkyServer answered columns that were not asked for: {names}")
        stream = RowStream(cols, [])  # type: ignore[arg-type]  # checked above
        if not names:
            return stream
        types = {c.name: ARROW_TYPES.get(c.datatype, pa.string()) if not c.arraysize else pa.string() for c in cols}  # type: ignore[union-attr]
        table = pcsv.read_csv(
            io.BytesIO(body.encode()),
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
            convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
        stream.overflow = table.num_rows >= self.config.row_limit
        stream.batches = table.to_batches()
        return stream

    def availability(self) -> tuple[bool, str]:
        return True, f"{self.name}: SkyServer {self.config.release} at {self.url} (asked per query)"
