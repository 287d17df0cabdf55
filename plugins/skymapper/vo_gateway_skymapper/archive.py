"""Kind ``skymapper``: the SkyMapper Southern Survey through its native services
(docs/upstreams.md §3): sm-cone (SCS), SkyMapper TAP when configured, bundled metadata.

* SCS on every configured catalogue (``dr2.master``, ``dr4.master``, ...) goes to sm-cone with
  ``RA``, ``DEC``, ``SR``, ``VERB``, ``CATALOG`` and ``RESPONSEFORMAT=CSV`` (parsed with pyarrow
  into the declared types); ``max_sr`` and ``max_rows`` are enforced with clear messages.
* ADQL: with ``tap_url`` it is forwarded to SkyMapper's TAP (schema names rewritten in the AST,
  by the core's TAP client, :mod:`gateway.tapclient`) with its known quirk handled: ``ORDER BY DISTANCE(...)``
  is rewritten to order by the selected alias.  Without ``tap_url`` a query must be bounded by a
  cone on the table's position (``CONTAINS(POINT, CIRCLE)=1`` or ``DISTANCE(...) < r``): the cone
  is fetched through sm-cone (``VERB=3``) and the whole query is evaluated exactly on those rows
  by the gateway's DuckDB engine (the residual).
* Images (with ``siap_url``): SIA 2.0 queries become SIAP ``query`` calls (``POS=ra,dec``,
  ``SIZE=w,h``, ``BAND``, ``MJD_START/END``, ``INTERSECT=OVERLAPS``, ``RESPONSEFORMAT=CSV``), one
  ObsCore row per image; DataLink for those IDs offers a SODA ``#cutout`` served by
  ``get_image`` (at most 0.17 deg across, docs/upstreams.md §3.2), proxied by the gateway.
* Metadata: SkyMapper's TAP_SCHEMA when reachable (kept in ``snapshot``), else the bundled
  :mod:`.metadata`.
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace

import pyarrow as pa
import pyarrow.csv as pcsv
from pydantic import AnyHttpUrl, Field, model_validator
from sqlglot import exp

from gateway.adql.validate import AdqlQuery
from gateway.archive import Cone, Cutout, CutoutRequest, ImageQuery, Link, Links, ScanRequest
from gateway.faults import TransientFault, UsageFault
from gateway.obscore import OBSCORE_COLUMNS, obscore_batch, record_matches
from gateway.rowstream import RowStream, limit_batches
from gateway.schema import ARROW_TYPES, Table
from gateway.sky import box_corners, shape_box
from gateway.tapclient import TapArchive, TapConfig
from gateway.upstream import check_complete, read_body

from .metadata import BUNDLED

log = logging.getLogger("gateway.skymapper")


class SkyMapperConfig(TapConfig):
    tap_url: AnyHttpUrl | None = Field(
        None, description="SkyMapper TAP, e.g. https://api.skymapper.nci.org.au/public/tap"
    )
    schemas: dict[str, str] = Field(
        default_factory=lambda: {"dr2": "skymapper_dr2", "dr4": "skymapper_dr4"},
        description="SkyMapper schema -> ADQL schema name in the gateway",
    )
    catalogs: list[str] = Field(
        default_factory=lambda: ["dr2.master", "dr4.master"],
        description="SkyMapper tables served (sm-cone CATALOG values)",
    )
    cone_url: AnyHttpUrl = Field("https://skymapper.anu.edu.au/sm-cone/public/query", description="sm-cone service")
    siap_url: AnyHttpUrl | None = Field(
        None, description="SIAP base, e.g. https://api.skymapper.nci.org.au/public/siap/dr4"
    )
    max_sr: float = Field(1.0, gt=0, le=10, description="largest cone radius sent to sm-cone, degrees")
    uploads: bool = Field(False, description="not known to take TAP_UPLOAD: the planner sends cones instead")
    max_rows: int = Field(1_000_000, ge=1, description="largest answer sm-cone gives")
    sample_position: tuple[float, float] = Field(
        (33.639837321, -0.766719986),
        description="where 'any n rows' queries (TOP n without WHERE/ORDER BY) take their rows, deg",
    )

    @model_validator(mode="after")
    def _tables_are_catalogs(self):
        if self.tables is None:
            self.tables = list(self.catalogs)
        for c in self.catalogs:
            if c.split(".", 1)[0] not in self.schemas:
                raise ValueError(f"catalog {c}: its schema has no gateway name in schemas")
        return self


# SkyMapper filters (Bessell et al. 2011, PASP 123, 789): centre and FWHM in nm
FILTERS = {"u": (349, 42), "v": (384, 31), "g": (510, 156), "r": (617, 158), "i": (779, 140), "z": (916, 84)}
CUTOUT_MAX = 0.17  # deg, get_image SIZE limit


class SkyMapperArchive(TapArchive):
    kind = "skymapper"
    Config = SkyMapperConfig

    def __init__(self, name, config, *, base_dir):
        super().__init__(name, config, base_dir=base_dir)
        tap = self.url is not None  # ADQL forwarded to SkyMapper's TAP; else sm-cone scans (gateway.planner)
        self.capabilities = replace(
            self.capabilities,
            adql=tap,
            cone=not tap,
            top=not tap,
            bounded=not tap,
            set_operations=tap,
            common_tables=tap,
        )
        if config.siap_url is not None:
            self.siap = str(config.siap_url).rstrip("/")
            self.release = self.siap.rsplit("/", 1)[-1]
            self.did_prefix = f"ivo://skymapper.anu.edu.au/{self.release}?"
            self.capabilities = replace(self.capabilities, images=True, datalink_proxy=True)
        #: gateway schema -> (master, photometry, images): the releases whose objects get a light
        #: curve link (per-epoch photometry with the images' MJD needs SkyMapper's TAP: sm-cone
        #: serves no images table and takes no object_id)
        by = {(t.schema.lower(), t.name.lower()): t for t in self._tables}
        self.lightcurves = (
            {
                s: (by[(s, "master")], by[(s, "photometry")], by[(s, "images")])
                for s, n in by
                if n == "master" and (s, "photometry") in by and (s, "images") in by
            }
            if self.url is not None
            else {}
        )
        if self.lightcurves:
            self.capabilities = replace(self.capabilities, datalink_proxy=True)

    def upstream_urls(self) -> list:
        return super().upstream_urls() + [self.config.cone_url, self.config.siap_url]

    def load_tables(self, snap) -> list[Table]:
        if self.url is not None:
            try:
                return super().load_tables(snap)
            except ValueError as e:
                log.warning("%s: %s; using the bundled metadata", self.name, e)
        out = []
        for c in self.config.catalogs:
            if c not in BUNDLED:
                raise ValueError(f"no bundled metadata for {c}; configure tap_url to read it from SkyMapper's TAP")
            out.append(BUNDLED[c](self.config.schemas[c.split(".", 1)[0]]))
        return out

    @property
    def title(self) -> str:
        return self.config.title or "SkyMapper Southern Survey"

    def upstream_name(self, table: Table) -> str:
        return f"{self.to_upstream[table.schema.lower()]}.{table.name}"

    # -- ADQL -----------------------------------------------------------------------------
    def translate(self, query: AdqlQuery):
        _alias_distance_order(query.ast)
        return super().translate(query)

    def execute(self, native, maxrec: int | None, top: int | None = None, context=None) -> RowStream:
        stream = super().execute(native, maxrec, top, context)
        ids = [m.column("object_id") for m, _, _ in self.lightcurves.values()]
        out = next((o.name for o in native.outputs if o.column is not None and any(o.column is c for c in ids)), None)
        if out is not None:  # each master row links to its per-epoch photometry (DataLink)
            stream.datalink = (self.name, out)
        return stream

    def scan(self, request: ScanRequest, context=None) -> RowStream:
        """Without ``tap_url``: one sm-cone call (``VERB=3``) for the request's cone.  A request
        with only a limit (a query for any n rows) takes a cone around ``sample_position``
        that grows until it holds enough rows."""
        actor = context.actor if context else None
        catalog = self.upstream_name(request.table)
        cone, sample = request.cone, request.cone is None
        if sample:
            if request.limit is None or request.predicates:
                raise UsageFault(
                    f"add a cone on {request.table.qualified_name}: WHERE 1 = CONTAINS(POINT('ICRS', "
                    f"{request.table.ra_column}, {request.table.dec_column}), CIRCLE('ICRS', ra, dec, "
                    f"radius)) (radius <= {self.config.max_sr} deg); SkyMapper is searched by position here"
                )
            cone = Cone(*self.config.sample_position, 0.05)
        batch = self._cone(catalog, cone, 3, actor)
        radius = cone.radius
        while sample and batch.num_rows < request.limit and radius < self.config.max_sr:
            radius = min(radius * 4, self.config.max_sr)
            batch = self._cone(catalog, Cone(cone.ra, cone.dec, radius), 3, actor)
        if sample:
            batch = batch.slice(0, request.limit)
        cols = [request.table.column(n) for n in batch.schema.names]
        return RowStream([c for c in cols if c is not None], [batch])

    def datalink_column(self, table: Table) -> str | None:
        if self.url is None:
            return None
        master = {m.qualified_name.lower() for m, _, _ in self.lightcurves.values()}
        return "object_id" if table.qualified_name.lower() in master else None

    # -- images (SIAP) ---------------------------------------------------------------------
    def image_search(self, query: ImageQuery) -> RowStream:
        """SIA 2.0 (SIA 2.0 §2.1) through SIAP ``query``: one call per POS; BAND and TIME sent
        as SkyMapper filters and MJD range, ``query.intersect`` (SIA 1.0 INTERSECT, from
        ``/sia1``) as SIAP's own; the other constraints applied to the rows exactly."""
        if not query.pos:
            raise UsageFault("SkyMapper images are found by position: give POS")
        bands = _bands(query.band)
        if bands == "":
            return RowStream(OBSCORE_COLUMNS, [obscore_batch([])])
        records, seen = [], set()
        for shape in query.pos:
            ra, dec, w, h = shape_box(shape)
            for lo, hi in query.time or [(None, None)]:
                params = {
                    "POS": f"{ra!r},{dec!r}",
                    "SIZE": f"{w:.6g},{h:.6g}",
                    "FORMAT": "image/fits",
                    "INTERSECT": query.intersect,
                    "VERB": "3",
                    "RESPONSEFORMAT": "CSV",
                }
                if bands:
                    params["BAND"] = bands
                if lo is not None:
                    params["MJD_START"], params["MJD_END"] = repr(lo), repr(hi)
                for row in self._siap(params):
                    rec = self._obscore(row, ra, dec, w, h)
                    if rec["obs_publisher_did"] not in seen and record_matches(rec, query, band=False, time=False):
                        seen.add(rec["obs_publisher_did"])
                        records.append(rec)
        stream = RowStream(OBSCORE_COLUMNS, [])
        stream.batches = limit_batches([obscore_batch(records)], query.maxrec, stream)
        return stream

    def _siap(self, params: dict) -> list[dict]:
        r = self.upstream_get("SkyMapper SIAP", self.siap + "/query", params, refused="the request")
        try:
            t = pcsv.read_csv(
                io.BytesIO(read_body(r, "SkyMapper SIAP", "csv")),
                convert_options=pcsv.ConvertOptions(column_types={"unique_image_id": pa.string(), "band": pa.string()}),
            )
        except pa.ArrowInvalid as e:
            raise TransientFault(f"SkyMapper SIAP sent unreadable CSV ({str(e)[:200]})")
        return t.to_pylist()

    def _obscore(self, row: dict, ra: float, dec: float, w: float, h: float) -> dict:
        centre, fwhm = FILTERS.get(row["band"], (None, None))
        corners = box_corners(ra, dec, w, h)
        return {
            "dataproduct_type": "image",
            "calib_level": 2,
            "obs_collection": f"SkyMapper {self.release.upper()}",
            "obs_id": row["unique_image_id"],
            "obs_publisher_did": self.did_prefix + row["unique_image_id"],
            "access_url": row.get("get_fits"),
            "access_format": "image/fits",
            "access_estsize": int(w * h * 3600 * 3600 / 0.25 * 4 / 1024) + 3,
            "s_ra": ra,
            "s_dec": dec,
            "s_fov": max(w, h),
            "s_region": corners,
            "s_resolution": row.get("mean_fwhm"),
            "t_min": row.get("mjd_obs"),
            "t_max": (row["mjd_obs"] + row["exptime"] / 86400) if row.get("mjd_obs") is not None else None,
            "t_exptime": row.get("exptime"),
            "t_xel": 1,
            "em_min": (centre - fwhm / 2) * 1e-9 if centre else None,
            "em_max": (centre + fwhm / 2) * 1e-9 if centre else None,
            "em_xel": 1,
            "pol_xel": 1,
            "o_ucd": "phot.count",
            "facility_name": "SkyMapper 1.35m (Siding Spring Observatory)",
            "instrument_name": "SkyMapper camera",
            "target_name": row.get("image_type"),
        }

    def claims(self, dataset_id: str) -> bool:
        return self.config.siap_url is not None and dataset_id.startswith(self.did_prefix)

    def links(self, ids: list[str], context) -> Links:
        """DataLink 1.1: SkyMapper serves cutouts, not whole CCDs: per image ID a ``#cutout``
        row to the gateway's SODA (``get_image``, at most 0.17 deg) and a ``#this`` row saying
        so.  A master ``object_id``: its light curve, per release with per-epoch photometry,
        as a TAP query URL (every detection with its image's MJD, by time), ``#auxiliary`` as
        MAST does for HSC matches."""
        from urllib.parse import urlencode

        rows: list[Link] = []
        for i in ids:
            if not self.claims(i):
                if not i.strip().isdigit() or not self.lightcurves:
                    rows.append(
                        Link(
                            i,
                            error_message="NotFoundFault: not a SkyMapper image ID or master object_id",
                            semantics="#auxiliary",
                        )
                    )
                for _master, phot, images in self.lightcurves.values() if i.strip().isdigit() else ():
                    q = (
                        f"SELECT p.image_id, i.date AS mjd, p.filter, p.mag_psf, p.e_mag_psf, p.flags "
                        f"FROM {phot.qualified_name} AS p JOIN {images.qualified_name} AS i ON i.image_id = p.image_id "
                        f"WHERE p.object_id = {int(i)} ORDER BY i.date"
                    )
                    rows.append(
                        Link(
                            i,
                            access_url=f"{context.service_url}/tap/sync?" + urlencode({"LANG": "ADQL", "QUERY": q}),
                            description=f"light curve: every {phot.qualified_name} detection of this object, by MJD",
                            semantics="#auxiliary",
                            content_type="application/x-votable+xml",
                        )
                    )
                continue
            rows.append(
                Link(
                    i,
                    error_message="NotFoundFault: SkyMapper serves cutouts (<= 0.17 deg) only; use #cutout",
                    semantics="#this",
                )
            )
            rows.append(
                Link(
                    i,
                    service_def="soda",
                    description="SODA cutout from SkyMapper get_image (at most 0.17 deg across)",
                    semantics="#cutout",
                    content_type="image/fits",
                )
            )
        return Links(rows)

    def cutout(self, request: CutoutRequest, context=None) -> Cutout | None:
        """SODA sync (SODA 1.0 §3) as one ``get_image`` call: CIRCLE/POS CIRCLE -> square of the
        circle's diameter, POS RANGE -> its box; sizes over 0.17 deg are refused."""
        did = request.id
        if not self.claims(did):
            raise UsageFault(f"ID {did!r} is not a SkyMapper {self.release} image")
        if request.region is None:
            raise UsageFault("give one region: POS (CIRCLE or RANGE) or CIRCLE")
        ra, dec, w, h = shape_box(request.region)
        if max(w, h) > CUTOUT_MAX:
            raise UsageFault(f"SkyMapper cutouts are at most {CUTOUT_MAX} deg across (asked {max(w, h):.3g} deg)")
        q = {
            "IMAGE": did[len(self.did_prefix) :],
            "SIZE": f"{w:.6g},{h:.6g}",
            "POS": f"{ra!r},{dec!r}",
            "FORMAT": "fits",
        }
        r = self.upstream_get("SkyMapper get_image", self.siap + "/get_image", q, refused="the cutout")
        check_complete(r.content, "fits", "SkyMapper get_image")
        return Cutout([r.content])

    # -- SCS ------------------------------------------------------------------------------
    def cone_search(self, table: Table, cone: Cone, maxrec: int | None, verb: int) -> RowStream:
        batch = self._cone(self.upstream_name(table), cone, verb, None)
        cols = [table.column(n) for n in batch.schema.names]
        stream = RowStream([c for c in cols if c is not None], [])
        stream.batches = limit_batches([batch], maxrec, stream)
        return stream

    def _cone(self, catalog: str, cone: Cone, verb: int, actor) -> pa.RecordBatch:
        """One sm-cone call (docs/upstreams.md §3.1), parsed into the declared column types."""
        if cone.radius > self.config.max_sr:
            raise UsageFault(
                f"SkyMapper cone searches are limited to a radius of {self.config.max_sr} deg "
                f"(asked {cone.radius:g} deg); split the area"
            )
        params = {
            "RA": repr(cone.ra),
            "DEC": repr(cone.dec),
            "SR": repr(cone.radius),
            "VERB": str(verb),
            "CATALOG": catalog,
            "RESPONSEFORMAT": "CSV",
        }
        r = self.upstream_get(
            "SkyMapper cone search", str(self.config.cone_url), params, self._session_for(actor), refused="the request"
        )
        table = next(t for t in self._tables if self.upstream_name(t) == catalog)
        batch = parse_csv(read_body(r, "SkyMapper cone search", "csv"), table)
        if batch.num_rows >= self.config.max_rows:
            raise UsageFault(
                f"the cone holds more than SkyMapper's limit of {self.config.max_rows} rows; use a smaller radius"
            )
        return batch


def _bands(intervals: list[tuple[float, float]]) -> str | None:
    """SkyMapper filters overlapping any BAND interval (metres): None = all, "" = none."""
    if not intervals:
        return None
    hit = [
        b
        for b, (c, f) in FILTERS.items()
        if any(lo <= (c + f / 2) * 1e-9 and hi >= (c - f / 2) * 1e-9 for lo, hi in intervals)
    ]
    return ",".join(hit)


def parse_csv(data: bytes, table: Table) -> pa.RecordBatch:
    """sm-cone CSV -> one RecordBatch with the declared types (pyarrow; empty fields are null)."""
    head = data.split(b"\n", 1)[0].decode().strip().split(",")
    if not head or head == [""]:
        raise TransientFault("SkyMapper cone search sent an empty answer")
    types = {}
    for n in head:
        c = table.column(n)
        types[n] = ARROW_TYPES.get(c.datatype, pa.string()) if c is not None else pa.string()
    try:
        t = pcsv.read_csv(
            io.BytesIO(data),
            convert_options=pcsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True),
        )
    except pa.ArrowInvalid as e:
        raise TransientFault(f"SkyMapper cone search sent unreadable CSV ({str(e)[:200]})")
    t = t.combine_chunks()
    return pa.RecordBatch.from_arrays(
        [
            t.column(i).chunk(0) if t.column(i).num_chunks else pa.array([], types[n])
            for i, n in enumerate(t.column_names)
        ],
        names=t.column_names,
    )


def _alias_distance_order(tree: exp.Select) -> None:
    """SkyMapper's TAP rejects ``ORDER BY DISTANCE(...)`` on the raw expression (docs/upstreams.md
    §3.3): order by the alias of the same selected expression instead, or say what to do."""
    order = tree.args.get("order")
    if order is None:
        return
    for o in order.expressions:
        key = o.this
        if isinstance(key, exp.Anonymous) and key.name.upper() == "DISTANCE":
            match = next((e for e in tree.expressions if isinstance(e, exp.Alias) and e.this == key), None)
            if match is None:
                raise UsageFault(
                    "SkyMapper's TAP cannot ORDER BY DISTANCE(...) directly; select the DISTANCE "
                    "with an alias and ORDER BY the alias"
                )
            o.set("this", exp.column(match.alias, quoted=True))


__all__ = ["SkyMapperArchive", "SkyMapperConfig"]
