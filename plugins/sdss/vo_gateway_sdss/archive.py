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
* Images (SIA 2.0, DataLink, SODA): the imaging frames of the fields covering a position, found
  in SkyServer's ``Field`` table, are the SAS ``frame-{band}-{run:06d}-{camcol}-{field:04d}
  .fits.bz2`` files at the path ``astroquery.sdss`` (``SDSS.get_images``) builds.  DataLink
  gives ``#this`` (that file) and ``#cutout`` (SODA through the gateway); a SODA cutout fetches
  the frame from the SAS and cuts it with its WCS (:func:`gateway.imagecut.cut_hdu`), its
  pixels in nanomaggies as the frame's ``BUNIT`` says (m_AB = 22.5 - 2.5 log10 of a sum).
"""

from __future__ import annotations

import bz2
import io
import math
import re
from dataclasses import dataclass, replace
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pcsv
from pydantic import AnyHttpUrl, Field

from gateway.adql.validate import AdqlQuery, OutputColumn
from gateway.archive import Archive, ArchiveConfig, Capabilities, Cone, Cutout, CutoutRequest, ImageQuery, Link, Links
from gateway.engine import normalize_batch, output_columns, scs_columns
from gateway.faults import NotFoundFault, TransientFault, UsageFault
from gateway.imagecut import cut_hdu
from gateway.obscore import OBSCORE_COLUMNS, obscore_batch, record_matches
from gateway.rowstream import RowStream, limit_batches
from gateway.schema import ARROW_TYPES, Table
from gateway.sky import separation, shape_overlaps_polygon, shape_vertices
from gateway.upstream import UpstreamSession, check_complete, origin, read_body, upstream_get

from .metadata import sdss_tables
from .translate import FIELDS, SPECTRA, to_skyserver_sql

RELEASES = ("dr12", "dr13", "dr14", "dr15", "dr16", "dr17", "dr18", "dr19")
#: SDSS ugriz filter ranges, metres (the half-maximum widths of the 2.5 m imaging camera's filters)
BANDS = {
    "u": (3.25e-7, 3.85e-7),
    "g": (4.05e-7, 5.50e-7),
    "r": (5.55e-7, 6.95e-7),
    "i": (6.95e-7, 8.45e-7),
    "z": (8.45e-7, 1.05e-6),
}
#: half the diagonal of a field (2048 x 1489 pixels of 0.396"), arcmin: a field whose centre is
#: farther than this plus a region's radius cannot overlap the region
FIELD_REACH = 8.4
#: the imaging rerun of DR8 and later (astroquery.sdss's default too): every frame is rerun 301
RERUN = 301
#: seconds each frame integrates (drift scan: 2048 rows at the sidereal rate)
EXPTIME = 53.907456
FRAME = re.compile(r"frame-([ugriz])-(\d{6})-(\d)-(\d{4})")


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
    sas_url: AnyHttpUrl | None = Field(
        "https://data.sdss.org/sas",
        description="the Science Archive Server holding the imaging frames (SIA, DataLink, SODA); null: no images",
    )
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
        origins = {origin(self.url)}
        self.sas = str(config.sas_url).rstrip("/") if config.sas_url else None
        if self.sas:
            origins.add(origin(self.sas))
            self.capabilities = replace(self.capabilities, images=True, datalink_proxy=True)
        self.session = UpstreamSession(origins, config.timeout, deadline=config.deadline)
        self.did_prefix = f"ivo://sdss.org/{config.release}/frames?"
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
        if table.name.lower() in FIELDS:  # no indexed cone function (``Field``, ``Frame``)
            sql = (
                f"SELECT {top}{names} FROM dbo.{table.name} AS t WHERE dbo.fDistanceArcMinEq(t.ra, t.dec, "
                f"{cone.ra!r}, {cone.dec!r}) <= {cone.radius * 60!r}"
            )
        else:
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

    # -- images (SIA 2.0, DataLink, SODA) -------------------------------------------------
    def frame_url(self, band: str, run: int, rerun: int, camcol: int, field: int) -> str:
        """The SAS URL of one frame, as ``astroquery.sdss`` builds it (``IMAGING_URL_SUFFIX``):
        ``{sas}/{release}/{boss|eboss|prior-surveys/sdss4-dr17-eboss}/photoObj/frames/{rerun}/
        {run}/{camcol}/frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2``."""
        dr = int(self.config.release[2:])
        instrument = "boss" if dr <= 12 else "eboss" if dr <= 17 else "prior-surveys/sdss4-dr17-eboss"
        return (
            f"{self.sas}/{self.config.release}/{instrument}/photoObj/frames/{rerun}/{run}/{camcol}/"
            f"frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2"
        )

    def image_search(self, query: ImageQuery) -> RowStream:
        """SIA 2.0 (§2) over the imaging frames: for each POS, the fields of SkyServer's
        ``Field`` table whose ra/dec range overlaps it (one SQL search per POS: field centres
        within the region's radius plus half a field's diagonal, then the range checked
        exactly), one ObsCore record per field and band; the other constraints applied to
        the records.  Raises UsageFault without POS."""
        if not query.pos:
            raise UsageFault("SDSS frames are found by position: give POS")
        bands = "".join(BANDS)
        cols = ["fieldID", "run", "rerun", "camcol", "field", "ra", "dec", "raMin", "raMax", "decMin", "decMax"]
        cols += [f"mjd_{b}" for b in bands] + [f"psfWidth_{b}" for b in bands]
        records: dict[str, dict] = {}
        for shape in query.pos:
            ra, dec, r = _bounding_circle(shape)
            sql = (
                f"SELECT {', '.join(cols)} FROM dbo.Field WHERE dbo.fDistanceArcMinEq(ra, dec, {ra!r}, {dec!r}) "
                f"<= {r * 60 + FIELD_REACH!r}"
            )
            for row in self.fetch(sql, cols, [None] * len(cols)).to_pylist():
                box = [
                    (row["raMin"], row["decMin"]),
                    (row["raMax"], row["decMin"]),
                    (row["raMax"], row["decMax"]),
                    (row["raMin"], row["decMax"]),
                ]
                if not shape_overlaps_polygon(shape, box):
                    continue
                for b in bands:
                    rec = self._frame_record(row, b, box)
                    if record_matches(rec, query):
                        records.setdefault(rec["obs_publisher_did"], rec)
        stream = RowStream(OBSCORE_COLUMNS, [])
        stream.batches = limit_batches([obscore_batch(list(records.values()))], query.maxrec, stream)
        return stream

    def _frame_record(self, row: dict, band: str, box: list) -> dict:
        run, rerun, camcol, field = (int(row[k]) for k in ("run", "rerun", "camcol", "field"))
        name = f"frame-{band}-{run:06d}-{camcol}-{field:04d}"
        mjd = row.get(f"mjd_{band}")
        fov = 2 * max(separation(row["ra"], row["dec"], a, d) for a, d in box)
        return {
            "dataproduct_type": "image",
            "calib_level": 2,
            "obs_collection": f"SDSS {self.config.release.upper()}",
            "obs_id": name,
            "obs_publisher_did": self.did_prefix + name,
            "access_url": self.frame_url(band, run, rerun, camcol, field),
            "access_format": "application/x-bzip2",
            "target_name": None,
            "s_ra": row["ra"],
            "s_dec": row["dec"],
            "s_fov": float(fov),
            "s_region": [float(v) for xy in box for v in xy],
            "s_resolution": row.get(f"psfWidth_{band}"),
            "s_xel1": 2048,
            "s_xel2": 1489,
            "t_min": mjd,
            "t_max": mjd + EXPTIME / 86400 if mjd else None,
            "t_exptime": EXPTIME,
            "t_xel": 1,
            "em_min": BANDS[band][0],
            "em_max": BANDS[band][1],
            "em_xel": 1,
            "o_ucd": "phot.flux.density;em.opt",
            "pol_xel": 1,
            "facility_name": "SDSS 2.5m",
            "instrument_name": "SDSS imaging camera",
        }

    def image_collections(self) -> list[str] | None:
        return [f"SDSS {self.config.release.upper()}"] if self.sas else None

    def _frame_of(self, dataset_id: str) -> tuple[str, int, int, int]:
        """(band, run, camcol, field) of a frame's publisher DID.  Raises NotFoundFault."""
        m = FRAME.fullmatch(dataset_id[len(self.did_prefix) :]) if self.claims(dataset_id) else None
        if m is None:
            raise NotFoundFault(f"{dataset_id!r} is not an SDSS frame of this service ({self.did_prefix}frame-...)")
        return m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))

    def claims(self, dataset_id: str) -> bool:
        return self.sas is not None and dataset_id.lower().startswith(self.did_prefix.lower())

    def links(self, ids: list[str], context) -> Links:
        """DataLink 1.1 (§3) for frames: ``#this``, the SAS file (bzip2-compressed FITS in
        nanomaggies), and ``#cutout``, SODA through the gateway."""
        rows: list[Link] = []
        for i in ids:
            try:
                band, run, camcol, field = self._frame_of(i)
            except NotFoundFault as e:
                rows.append(Link(i, error_message=f"NotFoundFault: {e}"))
                continue
            url = self.frame_url(band, run, RERUN, camcol, field)
            rows.append(
                Link(
                    i,
                    access_url=url,
                    semantics="#this",
                    description=f"SDSS {band}-band frame (FITS, bzip2; pixels in nanomaggies)",
                    content_type="application/x-bzip2",
                )
            )
            rows.append(
                Link(
                    i,
                    service_def="soda",
                    semantics="#cutout",
                    description="SODA cutout of the frame (FITS in nanomaggies, WCS of the cutout)",
                    content_type="image/fits",
                )
            )
        return Links(rows)

    def cutout(self, request: CutoutRequest, context=None) -> Cutout | None:
        """SODA sync (SODA 1.0 §3.3): the frame fetched from the SAS (bzip2, checked whole), its
        primary HDU cut to the region's pixel box with its WCS moved; the header keeps ``BUNIT``
        (nanomaggy) and ``NMGY``.  None when the region misses the frame."""
        band, run, camcol, field = self._frame_of(request.id)
        if request.region is None:
            raise UsageFault("give one region: POS, CIRCLE or POLYGON")
        url = self.frame_url(band, run, RERUN, camcol, field)
        r = upstream_get(self.session, "the SDSS SAS", url, None, self.config.timeout, refused="the frame")
        packed = read_body(r, "the SDSS SAS")
        try:
            data = bz2.decompress(packed)
        except (OSError, EOFError, ValueError):
            raise TransientFault(f"the SDSS SAS broke off its answer for {url.rsplit('/', 1)[-1]} (not whole bzip2)")
        check_complete(data, "fits", "the SDSS SAS")
        from astropy.io import fits

        with fits.open(io.BytesIO(data)) as hdul:
            body = cut_hdu(hdul[0].data, hdul[0].header, request.region, f"vo-gateway SODA cutout of {request.id}")
        name = url.rsplit("/", 1)[-1].removesuffix(".fits.bz2")
        return None if body is None else Cutout([body], filename=f"{name}-cutout.fits")

    def availability(self) -> tuple[bool, str]:
        return True, f"{self.name}: SkyServer {self.config.release} at {self.url} (asked per query)"


def _bounding_circle(shape: tuple) -> tuple[float, float, float]:
    """(ra, dec, radius) in degrees of a circle holding a POS shape."""
    if shape[0] == "circle":
        return shape[1], shape[2], shape[3]
    verts = shape_vertices(shape)
    x = sum(math.cos(math.radians(d)) * math.cos(math.radians(a)) for a, d in verts)
    y = sum(math.cos(math.radians(d)) * math.sin(math.radians(a)) for a, d in verts)
    z = sum(math.sin(math.radians(d)) for _, d in verts)
    ra = math.degrees(math.atan2(y, x)) % 360.0
    dec = math.degrees(math.atan2(z, math.hypot(x, y)))
    return ra, dec, max(float(separation(ra, dec, a, d)) for a, d in verts)
