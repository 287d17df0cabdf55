"""The ``embedded`` archive kind: tables ingested from local FITS, CSV, VOTable or Parquet
files into an in-memory DuckDB database, and FITS images served through SIA and SODA.

Positional tables are stored sorted by declination, so DuckDB's zone maps prune cone searches
(1.5 ms median for a 1′ cone over 482k Gaia rows on 2 cores; a HEALPix-indexed SQLite
measured up to 252 ms, see the closing note of issue 2).

Column metadata comes, in order of precedence, from the table's ``metadata`` YAML sidecar (or
inline ``columns``), then from the file (FITS ``TUNITn``/``TUCDn``, VOTable FIELD attributes),
and the VOTable datatype from the Arrow type.  Start-up fails if a column lacks a description.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import os
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from astropy.io import fits
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.adql.validate import OutputColumn
from gateway.archive import ArchiveConfig, Cone, Cutout, CutoutRequest, ImageQuery
from gateway.engine import DuckDBArchive, normalize_batch, output_columns, scs_columns, votable_type
from gateway.faults import NotFoundFault, UsageFault
from gateway.imagecut import cut_hdu, wcs_of
from gateway.obscore import OBSCORE_COLUMNS, obscore_batch
from gateway.rowstream import RowStream, limit_batches
from gateway.schema import Column, ForeignKey, Table
from gateway.sky import cone_rows, separation, shape_overlaps_polygon


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    datatype: str | None = None
    arraysize: str | None = None
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    description: str | None = None
    principal: bool = False
    indexed: bool = False


class ForeignKeySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: list[str]
    target_table: str
    target_columns: list[str]
    description: str | None = None


class TableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    source: Path
    format: Literal["parquet", "fits", "csv", "votable"] | None = None
    description: str
    metadata: Path | None = None
    columns: list[ColumnSpec] | None = None
    ra_column: str | None = None
    dec_column: str | None = None
    id_column: str | None = None
    foreign_keys: list[ForeignKeySpec] = Field(default_factory=list)


class ImageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    path: Path
    em_min: float = Field(gt=0, description="minimum wavelength, m")
    em_max: float = Field(gt=0, description="maximum wavelength, m")
    band: str | None = None
    target_name: str | None = None
    s_resolution: float | None = Field(None, description="PSF FWHM, arcsec")


class EmbeddedConfig(ArchiveConfig):
    kind: Literal["embedded"]
    adql_schema: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="ADQL schema name of the tables")
    tables: list[TableSpec] = Field(default_factory=list)
    images: list[ImageSpec] = Field(default_factory=list)
    image_collection: str | None = None
    facility_name: str | None = None
    instrument_name: str | None = None
    cache_dir: Path | None = Field(None, description="where decompressed images are kept")

    @model_validator(mode="after")
    def _images_need_collection(self):
        if self.images and not self.image_collection:
            raise ValueError("image_collection is required when images are configured")
        return self


def _suffix_format(p: Path) -> str:
    name = p.name.lower()
    for suf in (".gz", ".bz2"):
        if name.endswith(suf):
            name = name[: -len(suf)]
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".fits", ".fit", ".fz")):
        return "fits"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".vot", ".xml", ".votable")):
        return "votable"
    raise ValueError(f"{p}: cannot tell the format from the file name; set format:")


def read_table_file(path: Path, fmt: str | None) -> tuple[pa.Table, dict[str, dict]]:
    """Read a file into Arrow, with per-column metadata the file itself declares."""
    fmt = fmt or _suffix_format(path)
    meta: dict[str, dict] = {}
    if fmt == "parquet":
        return pq.read_table(path), meta
    if fmt == "csv":
        import pyarrow.csv as pacsv

        with _open(path) as f:
            return pacsv.read_csv(f), meta
    from astropy.table import Table as AstropyTable

    t = AstropyTable.read(path, format="fits" if fmt == "fits" else "votable")
    for name, col in t.columns.items():
        m = {}
        if col.unit is not None:
            m["unit"] = col.unit.to_string("vounit")
        if col.description:
            m["description"] = col.description
        ucd = col.meta.get("ucd") if col.meta else None
        if ucd:
            m["ucd"] = ucd
        meta[name.lower()] = m
    arrays, names = [], []
    for name in t.colnames:
        col = t[name]
        data = np.asarray(col)
        if data.ndim > 1:
            continue
        mask = np.asarray(col.mask) if hasattr(col, "mask") and col.mask is not np.False_ else None
        if data.dtype.kind in "SU":
            data = data.astype(str)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("="))
        arrays.append(pa.array(data, mask=mask))
        names.append(name.lower())
    return pa.table(arrays, names=names), meta


class EmbeddedArchive(DuckDBArchive):
    """Archive kind ``embedded``."""

    kind = "embedded"
    Config = EmbeddedConfig

    def __init__(self, name, config: EmbeddedConfig, *, base_dir: Path):
        super().__init__(name, config, base_dir=base_dir)
        self.capabilities = replace(DuckDBArchive.capabilities, images=bool(config.images))
        self._tables: list[Table] = []
        self._cone_index: dict[str, tuple[pa.Table, np.ndarray, np.ndarray]] = {}
        cur = self.cursor()
        cur.execute(f'CREATE SCHEMA "{config.adql_schema}"')
        for spec in config.tables:
            self._tables.append(self._ingest(cur, spec))
        cur.close()
        self._images = [self._image_record(spec) for spec in config.images]
        self._image_lock = threading.Lock()

    def _path(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.base_dir / p)

    def _ingest(self, cur, spec: TableSpec) -> Table:
        path = self._path(spec.source)
        if not path.exists():
            raise ValueError(f"archives.{self.name}.tables[{spec.name}].source: file {path} does not exist")
        data, file_meta = read_table_file(path, spec.format)
        specs = spec.columns
        if spec.metadata is not None:
            doc = yaml.safe_load(self._path(spec.metadata).read_text())
            specs = [ColumnSpec(**c) for c in doc["columns"]]
        by_name = {c.name.lower(): c for c in specs or []}
        if specs is not None:
            missing = [c.name for c in specs if c.name.lower() not in data.column_names]
            if missing:
                raise ValueError(f"{spec.name}: metadata names columns not in {path.name}: {missing}")
            data = data.select([c.name.lower() for c in specs])
        cols = []
        for fieldname, typ in zip(data.column_names, data.schema.types):
            cs = by_name.get(fieldname)
            fm = file_meta.get(fieldname, {})
            dt, asz = votable_type(typ)
            desc = (cs.description if cs else None) or fm.get("description")
            if not desc:
                raise ValueError(f"{self.name}.{spec.name}.{fieldname}: every column needs a description")
            cols.append(
                Column(
                    fieldname,
                    (cs.datatype if cs and cs.datatype else dt),
                    arraysize=(cs.arraysize if cs else None) or asz,
                    xtype=cs.xtype if cs else None,
                    unit=(cs.unit if cs else None) or fm.get("unit"),
                    ucd=(cs.ucd if cs else None) or fm.get("ucd"),
                    utype=cs.utype if cs else None,
                    description=desc,
                    principal=bool(cs and cs.principal),
                    indexed=bool(cs and cs.indexed) or fieldname in (spec.dec_column, spec.id_column),
                )
            )
        if spec.dec_column and spec.ra_column:  # sorted by declination: DuckDB's zone maps prune cones
            data = data.take(pc.sort_indices(data, [(spec.dec_column, "ascending")])).combine_chunks()
            self._cone_index[f"{self.config.adql_schema}.{spec.name}"] = (
                data,
                np.ascontiguousarray(data[spec.ra_column].to_numpy(zero_copy_only=False), np.float64),
                np.ascontiguousarray(data[spec.dec_column].to_numpy(zero_copy_only=False), np.float64),
            )
        cur.register("_ingest", data)
        cur.execute(f'CREATE TABLE "{self.config.adql_schema}"."{spec.name}" AS SELECT * FROM _ingest')
        cur.unregister("_ingest")
        key = data[spec.id_column] if spec.id_column else None
        if (
            key is not None
            and key.null_count == 0
            and (pa.types.is_integer(key.type) or pa.types.is_floating(key.type))
        ):
            self.order_index(f"{self.config.adql_schema}.{spec.name}", spec.id_column, key.to_numpy())
        fks = [
            ForeignKey(
                f"{self.config.adql_schema}_{spec.name}_{i}",
                fk.target_table,
                tuple(fk.columns),
                tuple(fk.target_columns),
                fk.description,
            )
            for i, fk in enumerate(spec.foreign_keys)
        ]
        return Table(
            self.config.adql_schema,
            spec.name,
            cols,
            spec.description,
            ra_column=spec.ra_column,
            dec_column=spec.dec_column,
            id_column=spec.id_column,
            nrows=data.num_rows,
            foreign_keys=fks,
        )

    def tables(self) -> list[Table]:
        return self._tables

    def cone_search(self, table: Table, cone: Cone, maxrec: int | None, verb: int) -> RowStream:
        """SCS over the table's rows kept in memory sorted by declination (the order DuckDB
        stores them in): :func:`gateway.sky.cone_rows` finds them without planning a query
        (about 2 ms less per cone than the prepared DuckDB statement); same rows, same order."""
        index = self._cone_index.get(table.qualified_name)
        if index is None:
            return super().cone_search(table, cone, maxrec, verb)
        data, ra, dec = index
        rows = cone_rows(ra, dec, cone)
        if maxrec is not None:
            rows = rows[: maxrec + 1]
        cols = scs_columns(table, verb)
        picked = data.select([c.name for c in cols]).take(pa.array(rows, pa.int64()))
        batches = [normalize_batch(b) for b in picked.to_batches()] or [
            pa.RecordBatch.from_pylist([], schema=picked.schema)
        ]
        stream = RowStream(output_columns([OutputColumn(c.name, c) for c in cols], picked.schema), [])
        stream.batches = limit_batches(batches, maxrec, stream)
        return stream

    # -- images -----------------------------------------------------------------------------
    def publisher_did(self, image_id: str) -> str:
        return f"ivo://vo-gateway/{self.name}?{image_id}"

    def _image_record(self, spec: ImageSpec) -> dict:
        path = self._path(spec.path)
        hdr = _primary_header(path)
        w = wcs_of(hdr)
        nx, ny = hdr["NAXIS1"], hdr["NAXIS2"]
        corners = w.calc_footprint(axes=(nx, ny))
        cra, cdec = w.wcs_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        fov = 2 * max(separation(cra, cdec, ra, dec) for ra, dec in corners)
        if "TAI" in hdr:
            t_min = hdr["TAI"] / 86400.0  # SDSS: TAI seconds since MJD 0
        elif "MJD-OBS" in hdr:
            t_min = float(hdr["MJD-OBS"])
        else:
            t_min = None
        exptime = float(hdr.get("EXPTIME", 0)) or None
        rec = {
            "dataproduct_type": "image",
            "calib_level": 2,
            "obs_collection": self.config.image_collection,
            "obs_id": spec.id,
            "obs_publisher_did": self.publisher_did(spec.id),
            "access_format": "image/fits",
            "access_estsize": int(path.stat().st_size // 1024),
            "target_name": spec.target_name,
            "s_ra": float(cra),
            "s_dec": float(cdec),
            "s_fov": float(fov),
            "s_region": [float(v) for xy in corners for v in xy],
            "s_resolution": spec.s_resolution,
            "s_xel1": int(nx),
            "s_xel2": int(ny),
            "t_min": t_min,
            "t_max": (t_min + exptime / 86400.0) if t_min is not None and exptime else t_min,
            "t_exptime": exptime,
            "t_xel": 1,
            "em_min": spec.em_min,
            "em_max": spec.em_max,
            "em_xel": 1,
            "o_ucd": "phot.flux.density;em.opt",
            "pol_states": None,
            "pol_xel": None,
            "facility_name": self.config.facility_name,
            "instrument_name": self.config.instrument_name,
            "_spec": spec,
            "_footprint": [tuple(map(float, c)) for c in corners],
            "_band": spec.band,
        }
        return rec

    def image_collections(self) -> list[str] | None:
        return [self.config.image_collection] if self.config.image_collection else None

    def image_records(self) -> list[dict]:
        return list(self._images)

    def image_search(self, q: ImageQuery) -> RowStream:
        out = [r for r in self._images if _matches(r, q)]
        stream = RowStream(OBSCORE_COLUMNS, [])
        batch = obscore_batch(out)
        stream.batches = limit_batches([batch], q.maxrec, stream)
        return stream

    def image_record(self, image_id: str) -> dict:
        for r in self._images:
            if r["obs_publisher_did"].lower() == image_id.lower() or r["obs_id"] == image_id:
                return r
        raise NotFoundFault(f"no image with ID {image_id}")

    def image_file(self, image_id: str) -> Path:
        """Path of the uncompressed FITS file (decompressed once into ``cache_dir``)."""
        rec = self.image_record(image_id)
        src = self._path(rec["_spec"].path)
        if src.suffix not in (".bz2", ".gz"):
            return src
        cache = Path(self.config.cache_dir or Path(tempfile.gettempdir()) / "vo-gateway-cache")
        if not cache.is_absolute():
            cache = self.base_dir / cache
        cache.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:12]
        dst = cache / f"{key}-{src.stem}"
        with self._image_lock:
            if not dst.exists():
                # a temporary name of this process's own: other processes (server workers, test
                # workers) may decompress the same file into the same cache at the same time
                fd, tmp = tempfile.mkstemp(dir=cache, prefix=dst.name + ".", suffix=".part")
                try:
                    with _open(src) as fi, os.fdopen(fd, "wb") as fo:
                        while chunk := fi.read(1 << 20):
                            fo.write(chunk)
                    os.replace(tmp, dst)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
        return dst

    def cutout(self, request: CutoutRequest, context=None) -> Cutout | None:
        """SODA cutout: the pixel bounding box of the region clipped to the image; the output
        WCS is the input WCS shifted to the cutout origin (astropy ``Cutout2D``)."""
        image_id, shape = request.id, request.region
        if shape is None:
            raise UsageFault("give a region: POS, CIRCLE or POLYGON")
        rec = self.image_record(image_id)
        if not shape_overlaps_polygon(shape, rec["_footprint"]):
            return None
        path = self.image_file(image_id)
        with fits.open(path, memmap=True) as hdul:
            body = cut_hdu(hdul[0].data, hdul[0].header, shape, f"vo-gateway SODA cutout of {image_id}")
        return None if body is None else Cutout([body], filename=f"{rec['obs_id']}-cutout.fits")


def _interval_hit(lo, hi, intervals) -> bool:
    if lo is None or hi is None:
        return False
    return any(ilo <= hi and ihi >= lo for ilo, ihi in intervals)


def _matches(r: dict, q: ImageQuery) -> bool:
    """SIA 2.0 §2.1: values of one parameter OR-ed, parameters AND-ed; NULL never matches."""
    if q.pos and not any(shape_overlaps_polygon(s, r["_footprint"]) for s in q.pos):
        return False
    if q.band and not _interval_hit(r["em_min"], r["em_max"], q.band):
        return False
    if q.time and not _interval_hit(r["t_min"], r["t_max"], q.time):
        return False
    if q.pol and not (r["pol_states"] and any(p in r["pol_states"].split("/") for p in q.pol)):
        return False
    for key, col in (
        ("fov", "s_fov"),
        ("spatres", "s_resolution"),
        ("exptime", "t_exptime"),
        ("timeres", "t_resolution"),
        ("specrp", "em_res_power"),
    ):
        iv = getattr(q, key)
        if iv and not (r[col] is not None and any(lo <= r[col] <= hi for lo, hi in iv)):
            return False
    if q.id and r["obs_publisher_did"].lower() not in [i.lower() for i in q.id]:
        return False
    for key, col in (
        ("collection", "obs_collection"),
        ("facility", "facility_name"),
        ("instrument", "instrument_name"),
        ("dptype", "dataproduct_type"),
        ("target", "target_name"),
        ("format", "access_format"),
    ):
        vals = getattr(q, key)
        if vals and r[col] not in vals:
            return False
    if q.calib and r["calib_level"] not in q.calib:
        return False
    return True


def _open(path: Path):
    """``path`` opened for binary reading, decompressed by its suffix (``.gz``, ``.bz2``)."""
    return {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)(path, "rb")


def _primary_header(path: Path) -> fits.Header:
    """The primary header of a FITS file, plain or gzip/bzip2-compressed, read up to its END
    card only: ``fits.open`` seeks past the data unit, which for a compressed file means
    decompressing all of it (about 0.35 s per SDSS frame)."""
    with _open(path) as f:
        return fits.Header.fromfile(f)
