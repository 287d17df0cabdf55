"""One HATS catalogue (HATS 1.0: HEALPix-partitioned Parquet, ``hats.properties``, margin
caches): its metadata as a gateway :class:`~gateway.schema.Table`, the partitions a sky region
touches, and the reading of partitions.

* The catalogue is opened once with ``hats`` (the partition tree, properties and Parquet schema)
  and ``lsdb`` (for crossmatches, which need the margin cache).  A collection directory opens
  its primary catalogue and default margin.
* Columns: names and types from the Parquet schema; units, UCDs and descriptions from the
  user's metadata file (YAML ``columns: [{name, unit, ucd, description}]``), else from the
  Parquet field metadata; the positional columns from the properties (``hats_col_ra``,
  ``hats_col_dec``).  The spatial index column ``_healpix_29`` is not offered.
* A region (cone, polygon) becomes the set of partitions it touches (``hats``'
  ``filter_by_cone`` / ``filter_by_polygon``), and inside those the row groups whose
  ``_healpix_29`` range can hold it (pyarrow filters on the order-29 ranges of the region's
  MOC): only those are read.  Column selection and comparisons go into the same Parquet read.
* Every partition read is counted (:attr:`HatsCatalog.partitions_read`); a read that fails
  names the partition.
* Id lookups: a collection's index catalogues (``all_indexes`` in ``collection.properties``,
  built by hats-import's ``add_index``) map a column's values to the partitions holding them;
  an ``=`` or ``IN`` condition on an indexed column reads only those partitions
  (:meth:`HatsCatalog.partitions_of`).  Without an index, the same condition still skips row
  groups by their Parquet statistics.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pds
import yaml

from gateway.engine import votable_type
from gateway.faults import TransientFault
from gateway.schema import Column, Table

SPATIAL_INDEX = "_healpix_29"
#: a region's MOC is used to filter row groups when it has at most this many order-29 ranges
MAX_RANGE_FILTERS = 64


@dataclass
class Region:
    """A sky region in ICRS degrees: ``("circle", ra, dec, r)`` or ``("polygon", [(ra, dec), ...])``."""

    kind: str
    args: tuple

    def describe(self) -> str:
        if self.kind == "circle":
            ra, dec, r = self.args
            return f"CIRCLE({ra}, {dec}, {r})"
        return f"POLYGON({len(self.args[0])} vertices)"


@dataclass
class Partition:
    """One partition: its HEALPix ``order``/``pixel`` and the Parquet file or directory."""

    order: int
    pixel: int
    path: str

    @property
    def name(self) -> str:
        return f"Norder={self.order}/Npix={self.pixel}"


@dataclass
class ReadRequest:
    """What to read from some partitions of a catalogue: the ``columns`` (None: all offered),
    pyarrow ``filters`` (DNF list of ``(column, op, value)``) and order-29 ``ranges``
    (``[lo, hi)`` of ``_healpix_29``) that the rows may lie in (None: anywhere)."""

    partitions: list[Partition]
    columns: list[str] | None = None
    filters: list[tuple] = field(default_factory=list)
    ranges: list[tuple[int, int]] | None = None


def _term(f, op: str, value):
    if op == "in":
        return f.isin(list(value))
    if op in ("=", "=="):
        return f == value
    if op == "!=":
        return f != value
    if op == "<":
        return f < value
    if op == "<=":
        return f <= value
    if op == ">":
        return f > value
    if op == ">=":
        return f >= value
    raise ValueError(op)


def read_partition(part: Partition, columns: list[str] | None, filters: list[tuple], ranges) -> pa.Table:
    """The rows of one partition: ``columns`` only, rows passing ``filters`` and lying in the
    ``ranges`` of ``_healpix_29`` (row groups outside them are skipped by their statistics).
    A module-level function, so Dask workers can run it.  Raises TransientFault naming the
    partition when its file cannot be read."""
    expr = None
    for col, op, value in filters:
        term = _term(pds.field(col), op, value)
        expr = term if expr is None else expr & term
    if ranges:
        h = pds.field(SPATIAL_INDEX)
        span = None
        for lo, hi in ranges:
            t = (h >= lo) & (h < hi)
            span = t if span is None else span | t
        expr = span if expr is None else expr & span
    try:
        dataset = pds.dataset(part.path, format="parquet")
        table = dataset.to_table(columns=columns, filter=expr)
    except (OSError, pa.ArrowException, ValueError) as e:
        raise TransientFault(f"partition {part.name} could not be read ({type(e).__name__}: {str(e)[:200]})")
    return table


def _valid_ucd(ucd: str | None) -> str | None:
    """A UCD1+ word list from Parquet field metadata, or None (older UCD1 words such as
    ``ID_MAIN`` are not UCD1+ and would break clients' VOTable parsing)."""
    from astropy.io.votable.ucd import check_ucd

    return ucd if ucd and check_ucd(ucd, check_controlled_vocabulary=True) else None


class HatsCatalog:
    """An opened HATS catalogue (module docstring)."""

    def __init__(self, path: str, schema: str, name: str, metadata: Path | None, id_column: str | None, description):
        import hats
        import lsdb

        self.path = path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.lsdb = lsdb.open_catalog(path, columns="all")
            except Exception as e:  # noqa: BLE001 - any failure to open is reported by path and reason
                raise ValueError(f"HATS catalogue {path} cannot be opened: {type(e).__name__}: {e}") from None
        self.hc = self.lsdb.hc_structure
        info = self.hc.catalog_info
        self.ra, self.dec = info.ra_column, info.dec_column
        self.nrows = int(info.total_rows or 0)
        self.margin_arcsec = (
            float(self.lsdb.margin.hc_structure.catalog_info.margin_threshold) if self.lsdb.margin is not None else None
        )
        self.base = self.hc.catalog_base_dir
        self._hats = hats
        self._lock = threading.Lock()
        self._views: OrderedDict[tuple[str, ...], object] = OrderedDict()
        self.partitions_read = 0
        self.indexes = self._indexes(hats, path)
        self.table = self._table(schema, name, metadata, id_column, description)

    # -- metadata ---------------------------------------------------------------------------
    def _table(self, schema: str, name: str, metadata: Path | None, id_column: str | None, description) -> Table:
        given: dict[str, dict] = {}
        if metadata is not None:
            doc = yaml.safe_load(metadata.read_text()) or {}
            given = {c["name"].lower(): c for c in doc.get("columns", [])}
        arrow = self.hc.schema
        cols = []
        for f in arrow:
            if f.name == SPATIAL_INDEX:
                continue
            datatype, arraysize = votable_type(f.type)
            meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
            g = given.get(f.name.lower(), {})
            ucd = g.get("ucd") or _valid_ucd(meta.get("ucd"))
            if f.name == self.ra and not ucd:
                ucd = "pos.eq.ra;meta.main"
            if f.name == self.dec and not ucd:
                ucd = "pos.eq.dec;meta.main"
            if id_column and f.name == id_column and not ucd:
                ucd = "meta.id;meta.main"
            unit = g.get("unit") or meta.get("unit") or ("deg" if f.name in (self.ra, self.dec) else None)
            cols.append(
                Column(
                    f.name,
                    datatype,
                    arraysize,
                    unit=unit,
                    ucd=ucd,
                    description=g.get("description") or meta.get("description"),
                    principal=f.name in (self.ra, self.dec, id_column),
                    indexed=f.name in (self.ra, self.dec),
                )
            )
        what = description or f"HATS catalogue {Path(str(self.path)).name}"
        return Table(
            schema,
            name,
            cols,
            description=f"{what} ({self.nrows:,} rows in {len(self.partitions())} HEALPix partitions)",
            ra_column=self.ra,
            dec_column=self.dec,
            id_column=id_column,
            nrows=self.nrows or None,
        )

    @staticmethod
    def _indexes(hats, path: str) -> dict[str, object]:
        """The collection's index catalogues, opened now (lower-case column name -> hats
        ``IndexCatalog``); one that cannot be opened is reported by path and reason."""
        from hats.catalog.catalog_collection import CatalogCollection

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coll = hats.read_hats(path)
            if not isinstance(coll, CatalogCollection) or not coll.all_indexes:
                return {}
            out = {}
            for name in coll.all_indexes:
                where = coll.get_index_dir_for_field(name)
                try:
                    out[name.lower()] = hats.read_hats(where)
                except Exception as e:  # noqa: BLE001 - reported by path and reason
                    raise ValueError(
                        f"HATS index catalogue {where} cannot be opened: {type(e).__name__}: {e}"
                    ) from None
        return out

    def partitions_of(self, filters: list[tuple]) -> set[tuple[int, int]] | None:
        """(order, pixel) of the partitions that may hold the rows of the first ``=``/``IN``
        filter on an indexed column (hats ``IndexCatalog.loc_partitions``, one Parquet read of
        the index); None when no filter has an index.  Raises TransientFault naming the index
        when it cannot be read."""
        for column, op, value in filters:
            index = self.indexes.get(column.lower())
            if index is None or op not in ("=", "in"):
                continue
            values = list(value) if op == "in" else [value]
            try:
                pixels = index.loc_partitions(values)  # type: ignore[attr-defined]
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                continue  # values the index column cannot hold (e.g. 1.5 for a long): statistics decide
            except Exception as e:  # noqa: BLE001 - a read failure names the index
                where = index.catalog_base_dir  # type: ignore[attr-defined]
                raise TransientFault(f"HATS index {where} could not be read ({type(e).__name__}: {str(e)[:200]})")
            return {(int(p.order), int(p.pixel)) for p in pixels}
        return None

    VIEWS = 16

    def columns_view(self, columns: list[str]):
        """The LSDB catalogue (with its margin) reading only ``columns``, opened once per column
        set (the last :attr:`VIEWS` kept).  LSDB pushes an ``open_catalog(columns=...)`` list
        into its Parquet reads; ``catalog[columns]`` instead adds a select to every partition
        after a full read, a quarter of a crossmatch's time on a six-column Gaia table."""
        import lsdb

        key = tuple(columns)
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
                return view
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                view = lsdb.open_catalog(self.path, columns=list(columns))
            except Exception as e:  # noqa: BLE001 - reported as the partition reads' failures are
                raise TransientFault(f"HATS catalogue {self.path} cannot be opened: {type(e).__name__}: {e}") from None
        with self._lock:
            self._views[key] = view
            while len(self._views) > self.VIEWS:
                self._views.popitem(last=False)
        return view

    # -- partitions ---------------------------------------------------------------------------
    def partitions(self, hc_structure=None) -> list[Partition]:
        from hats.io import pixel_catalog_file

        hc = hc_structure if hc_structure is not None else self.hc
        suffix = hc.catalog_info.npix_suffix
        return [
            Partition(p.order, p.pixel, str(pixel_catalog_file(self.base, p, npix_suffix=suffix)))
            for p in hc.get_healpix_pixels()
        ]

    def select(self, regions: list[Region] | None) -> tuple[list[Partition], list[tuple[int, int]] | None]:
        """The partitions the union of ``regions`` touches and the order-29 ranges its rows may
        lie in (None: do not filter by range); all partitions for None."""
        if not regions:
            return self.partitions(), None
        parts: dict[str, Partition] = {}
        ranges: list[tuple[int, int]] = []
        by_range = True
        for region in regions:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    moc, r29 = self._moc(region)
                    sub = self.hc.filter_by_moc(moc)
                except ValueError:  # no partition in the region
                    continue
            for p in self.partitions(sub):
                parts.setdefault(p.path, p)
            if len(r29) > MAX_RANGE_FILTERS:
                by_range = False  # too many ranges to be worth filtering by
            else:
                ranges += [(int(lo), int(hi)) for lo, hi in r29]
        return list(parts.values()), (ranges if by_range and ranges else None)

    def _moc(self, region: Region) -> tuple:
        """(MOC, its order-29 ranges as an (n, 2) array) of the region (mocpy), at the
        HEALPix order whose cells are about half the region's radius (coarser while it has more than MAX_RANGE_FILTERS order-29 ranges, not
        coarser than the partitions), a hair wider than the region: the exact test decides at
        the edge."""
        from hats.pixel_math.region_to_moc import cone_to_moc, polygon_to_moc

        from gateway.sky import separation, unit

        if region.kind == "circle":
            ra, dec, r = region.args
        else:
            (verts,) = region.args
            v = np.asarray(verts, dtype=float)
            xyz = unit(v[:, 0], v[:, 1]).sum(axis=0)
            ra = float(np.degrees(np.arctan2(xyz[1], xyz[0])) % 360.0)
            dec = float(np.degrees(np.arctan2(xyz[2], np.hypot(xyz[0], xyz[1]))))
            r = float(np.max(separation(v[:, 0], v[:, 1], ra, dec)))
        low = int(self.hc.get_max_coverage_order())
        order = int(np.clip(np.floor(np.log2(58.6 / max(r / 2, 1e-9))), low, 20))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if region.kind == "circle":
                moc = cone_to_moc(ra, dec, r * 3600 * (1 + 1e-9) + 1e-6, order)
            else:
                moc = polygon_to_moc(verts, order)
        r29 = np.asarray(moc.to_depth29_ranges)
        while len(r29) > MAX_RANGE_FILTERS and order > low:
            order -= 1
            moc = moc.degrade_to_order(order)
            r29 = np.asarray(moc.to_depth29_ranges)
        return moc, r29

    def read(self, part: Partition, columns, filters, ranges) -> pa.Table:
        table = read_partition(part, columns, filters, ranges)
        with self._lock:
            self.partitions_read += 1
        return table


def take(it, n: int) -> list:
    """The next ``n`` items of the iterator ``it`` (fewer at its end)."""
    return list(islice(it, n))
