"""Kind ``sdss``: the SDSS catalogues through SkyServer's SQL search (docs/upstreams.md §5), sent
the way ``astroquery.sdss`` sends them (``SDSS.query_sql``): ``GET
{skyserver}/{release}/en/tools/search/x_results.aspx`` with ``cmd`` (the SQL, on one line),
``format=csv`` and ``searchtool=SQL``.

* ADQL over SDSS tables goes to SkyServer as one T-SQL statement (:mod:`.translate`): joins
  of PhotoObj with SpecObj, conditions and TOP as written, cones as SkyServer's indexed
  ``dbo.fGetNearbyObjEq`` joins.  Queries that also touch other archives are planned by the
  gateway, which sends SkyServer its part.  A query block with neither a cone nor an id
  condition (``objID``, ``specObjID``, ``bestObjID``) is refused: SkyServer's tables hold 10^8
  to 10^9 rows.  SCS builds the same cone statement (:meth:`SdssArchive.cone_search`).
* Answers are CSV after a ``#Table1`` line.  SkyServer reports SQL errors with HTTP 200 and
  ``error_message`` in the text; that becomes a 400 with SkyServer's own message.  When the
  answer has ``row_limit`` rows (SkyServer's cap), the answer is cut: OVERFLOW, never complete.
* ``objID`` and the other 64-bit ids are read as exact integers; ``specObjID`` as its digits.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pcsv
from pydantic import AnyHttpUrl, Field

from gateway.adql.validate import AdqlQuery, OutputColumn
from gateway.archive import Archive, ArchiveConfig, Capabilities, Cone
from gateway.engine import normalize_batch, output_columns, scs_columns
from gateway.faults import TransientFault, UsageFault
from gateway.rowstream import RowStream, limit_batches
from gateway.schema import ARROW_TYPES, Table
from gateway.upstream import UpstreamSession, check_complete, origin, upstream_get

from .metadata import sdss_tables
from .translate import SPECTRA, to_skyserver_sql

RELEASES = ("dr12", "dr13", "dr14", "dr15", "dr16", "dr17", "dr18", "dr19")


@dataclass
class SdssPlan:
    sql: str
    outputs: list[OutputColumn]
    query: AdqlQuery  # re-translated with MAXREC + 1 as its TOP


class SdssConfig(ArchiveConfig):
    release: Literal[RELEASES] = Field("dr17", description="SDSS data release (SkyServer path and schema name)")
    skyserver_url: AnyHttpUrl = Field("https://skyserver.sdss.org", description="SkyServer base URL")
    schema_name: str | None = Field(None, description="ADQL schema of the tables (default: sdss_<release>)")
    row_limit: int = Field(500_000, ge=1, description="SkyServer's row cap: an answer this long is cut (OVERFLOW)")
    timeout: float = Field(60.0, gt=0, description="seconds one read of a SkyServer answer may wait")
    deadline: float = Field(600.0, gt=0, description="seconds one SkyServer call may take in all")


def error_text(text: str) -> str:
    """SkyServer's error message from an answer that has ``error_message`` in it (HTML or text)."""
    plain = re.sub(r"<[^>]+>", " ", text)
    plain = re.sub(r"\s+", " ", plain).strip()
    i = plain.lower().find("error_message")
    return plain[i:][:500] if i >= 0 else plain[:500]


class SdssArchive(Archive):
    kind = "sdss"
    Config = SdssConfig
    capabilities = Capabilities(adql=True, geometry_functions=frozenset({"CONTAINS", "POINT", "CIRCLE", "DISTANCE"}))

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

    # -- queries --------------------------------------------------------------------------
    def translate(self, query: AdqlQuery) -> SdssPlan:
        return SdssPlan(to_skyserver_sql(query, self.schema.lower()), query.output, query)

    def execute(self, native: SdssPlan, maxrec: int | None, top: int | None = None, context=None) -> RowStream:
        """The query on SkyServer: at most ``maxrec`` rows (MAXREC + 1 asked as its TOP),
        OVERFLOW when more exist or when SkyServer's ``row_limit`` cut the answer."""
        sql = native.sql
        if maxrec is not None and not (top is not None and top <= maxrec):
            sql = to_skyserver_sql(native.query, self.schema.lower(), limit=maxrec + 1)
        types = [o.column for o in native.outputs]
        table = self.fetch(sql, [o.name for o in native.outputs], types)
        stream = RowStream(output_columns(native.outputs, table.schema), [])
        stream.overflow = self.overflowed(table.num_rows, maxrec)
        stream.batches = limit_batches([normalize_batch(b) for b in table.to_batches()], maxrec, stream)
        return stream

    def result_key(self, native: SdssPlan) -> str:
        return native.sql

    def cone_search(self, table: Table, cone: Cone, maxrec: int | None, verb: int) -> RowStream:
        """SCS (SCS 1.03 §2): ``SELECT TOP maxrec+1 <VERB columns> FROM dbo.Table AS t JOIN
        dbo.fGetNearbyObjEq(ra, dec, r_arcmin) AS n ON n.objID = t.objID``."""
        cols = scs_columns(table, verb)
        spectra = table.name.lower() in SPECTRA
        fn, key = ("fGetNearbySpecObjEq", "specObjID") if spectra else ("fGetNearbyObjEq", "objID")
        names = "t.*" if len(cols) == len(table.columns) else ", ".join(f"t.{c.name}" for c in cols)
        top = f"TOP {maxrec + 1} " if maxrec is not None else ""
        sql = (
            f"SELECT {top}{names} FROM dbo.{table.name} AS t JOIN dbo.{fn}({cone.ra!r}, {cone.dec!r}, "
            f"{cone.radius * 60!r}) AS n ON n.{key} = t.{key}"
        )
        rows = self.fetch(sql, [c.name for c in cols], list(cols))
        stream = RowStream(list(cols), [])
        stream.overflow = self.overflowed(rows.num_rows, maxrec)
        stream.batches = limit_batches(rows.to_batches(), maxrec, stream)
        return stream

    def overflowed(self, rows: int, maxrec: int | None) -> bool:
        """An answer of ``rows`` rows is not complete: SkyServer's cap cut it, or it holds the
        MAXREC + 1st row."""
        return rows >= self.config.row_limit or (maxrec is not None and rows > maxrec)

    def fetch(self, sql: str, names: list[str], columns: list) -> pa.Table:
        """One SkyServer SQL search (module docstring): its CSV answer with the declared types of
        ``columns`` (None: as pyarrow reads it) under ``names``.  Raises UsageFault for
        SkyServer's errors (its text), TransientFault for failures."""
        r = upstream_get(
            self.session,
            "SkyServer",
            self.url,
            {"cmd": sql, "format": "csv", "searchtool": "SQL"},
            self.config.timeout,
            refused="the query",
        )
        text = r.text
        if "error_message" not in text:
            check_complete(r.content, "csv", "SkyServer")  # a cut answer is an error, never fewer rows
        if "error_message" in text:
            raise UsageFault(f"SkyServer refused the query: {error_text(text)}")
        if not text.startswith("#Table1"):
            raise TransientFault(f"SkyServer answered something that is not a CSV table: {text[:200]!r}")
        body = text.split("\n", 1)[1] if "\n" in text else ""
        header = [h.strip() for h in body.split("\n", 1)[0].split(",")] if body.strip() else []
        if len(header) != len(names):
            raise TransientFault(f"SkyServer answered {len(header)} columns for {len(names)}: {header}")
        types = {
            n: (pa.string() if c.arraysize else ARROW_TYPES.get(c.datatype, pa.string()))
            for n, c in zip(names, columns)
            if c is not None
        }
        return pcsv.read_csv(
            io.BytesIO(body.encode()),
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
            convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )

    def availability(self) -> tuple[bool, str]:
        return True, f"{self.name}: SkyServer {self.config.release} at {self.url} (asked per query)"
