"""Crossmatches of the ``hats`` kind on LSDB: every pair within a radius, margin-aware, partition
by partition on Dask (the cluster of ``dask_scheduler``, else threads in this process).

LSDB aligns the two catalogues' partitions and gives each pair of aligned partitions, with the
right catalogue's margin cache, to a crossmatch algorithm.  Its default (``KdTreeCrossmatch``)
keeps the k nearest neighbours; a TAP join keeps every pair, so :class:`AllPairs` finds them
all: a k-d tree of the unit vectors on each side and every pair closer than the chord of the
radius (scipy ``cKDTree.sparse_distance_matrix``).  The gateway then evaluates the ADQL join
condition again on the pairs, exactly.
"""

from __future__ import annotations

import queue
import threading
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
from lsdb.core.crossmatch.kdtree_match import KdTreeCrossmatch
from lsdb.core.crossmatch.kdtree_utils import _get_chord_distance
from scipy.spatial import cKDTree

from gateway.engine import normalize_batch

from .catalog import SPATIAL_INDEX, take


class AllPairs(KdTreeCrossmatch):
    """Every pair of a left and a right row closer than ``radius_arcsec`` (a hair more: the
    gateway's exact test decides at the edge)."""

    def perform_crossmatch(self, crossmatch_args):
        left_xyz, right_xyz = self._get_point_coordinates(
            crossmatch_args.left_df,
            crossmatch_args.left_catalog_info,
            crossmatch_args.right_df,
            crossmatch_args.right_catalog_info,
        )
        extra = pd.DataFrame({"_dist_arcsec": pd.Series(dtype=pd.ArrowDtype(pa.float64()))})
        if len(left_xyz) == 0 or len(right_xyz) == 0:
            return np.array([], dtype=np.int64), np.array([], dtype=np.int64), extra
        chord = _get_chord_distance(self.radius_arcsec * (1 + 1e-9) + 1e-6)
        pairs = cKDTree(left_xyz).sparse_distance_matrix(cKDTree(right_xyz), chord, output_type="ndarray")
        arc = np.degrees(2.0 * np.arcsin(np.minimum(1.0, 0.5 * pairs["v"]))) * 3600
        extra = pd.DataFrame({"_dist_arcsec": pd.Series(arc, dtype=pd.ArrowDtype(pa.float64()))})
        return pairs["i"].astype(np.int64), pairs["j"].astype(np.int64), extra


def _searched(cat, bounds):
    """An LSDB catalogue narrowed to the one region of ``bounds`` (several: not narrowed)."""
    if len(bounds.regions) != 1:
        return cat
    region = bounds.regions[0]
    if region.kind == "circle":
        ra, dec, r = region.args
        return cat.cone_search(ra, dec, r * 3600 * (1 + 1e-9) + 1e-6, fine=False)
    (verts,) = region.args
    return cat.polygon_search(verts, fine=False)


def crossmatch_batches(archive, loader, context, progress):
    """(batches, schema) of the pairs view: left columns as ``l__name``, right as ``r__name``."""
    from lsdb.loaders.dataframe.dataframe_catalog_loader import DataframeCatalogLoader

    spec = loader.xm
    right_cat = loader.catalog
    lcols, rcols = spec["left_columns"], spec["right_columns"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        right = _searched(right_cat.columns_view(rcols), spec["right_bounds"])
        if spec["left"] is not None:
            left = _searched(spec["left"].columns_view(lcols), spec["left_bounds"])
            left_schema = spec["left"].hc.schema
        else:
            upload: pa.Table = spec["upload"]
            ra, dec = spec["left_pos"]
            # the left side of a crossmatch needs no margin (the right one's covers the edges):
            # ``DataframeCatalogLoader`` partitions the rows, as ``lsdb.from_dataframe`` does
            # before it computes and copies the whole frame to build the margin it would skip.
            # Partitions no finer than order 5 (1.8 deg): LSDB's row histogram at its default
            # order 7 costs 0.3 s, and a coarse in-memory left side crossmatches as fast.
            df = upload.to_pandas(types_mapper=pd.ArrowDtype)
            left = DataframeCatalogLoader(df, ra_column=ra, dec_column=dec, highest_order=5).load_catalog()
            left_schema = upload.schema
        xm = left.crossmatch(
            right,
            algorithm=AllPairs(radius_arcsec=spec["radius_arcsec"]),
            suffixes=("__l", "__r"),
            suffix_method="all_columns",
            log_changes=False,
        )
    fields = [pa.field("l__" + n, left_schema.field(n).type) for n in lcols]
    fields += [pa.field("r__" + n, right_cat.hc.schema.field(n).type) for n in rcols]
    schema = normalize_batch(pa.RecordBatch.from_pylist([], schema=pa.schema(fields))).schema
    parts = xm.to_delayed()
    progress["partitions"] += len(parts)

    def batches():
        client = archive.client()
        if client is not None:
            from distributed import as_completed

            pending = iter(parts)
            ahead = 2 * archive.config.threads
            live = as_completed([client.compute(d) for d in take(pending, ahead)])
            for fut in live:
                if context is not None:
                    context.check()
                df = fut.result()
                for d in take(pending, 1):
                    live.add(client.compute(d))
                progress["partitions_done"] += 1
                yield from _pairs(df, lcols, rcols, schema)
            return
        yield from _pipeline(parts, archive.config.threads, context, progress, lcols, rcols, schema)

    return batches(), schema


class _Stopped(Exception):
    """The consumer of a crossmatch went away (cancelled job, closed connection, error)."""


def _pipeline(parts, threads: int, context, progress, lcols, rcols, schema):
    """The pairs of ``parts`` (Dask delayed frames) on Dask's threaded scheduler, one graph for
    all of them (a partition and margin that several pairs of partitions share is read once),
    streamed as the partitions finish: each result goes into a queue of ``2 * threads`` frames
    whose put blocks its worker thread while the consumer is behind, so at most a few
    partitions' pairs are held in memory however large the answer.  When the consumer stops
    (cancelled job, closed connection, error) the blocked and later puts raise and the
    computation ends."""
    import dask

    out: queue.Queue = queue.Queue(maxsize=2 * threads)
    stop = threading.Event()
    done = object()

    def put(item) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Stopped()

    def sink(df) -> int:
        put(df)
        return 0

    def run() -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dask.compute(
                    *[dask.delayed(sink, pure=False)(d) for d in parts], scheduler="threads", num_workers=threads
                )
            put(done)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            try:
                put(e)
            except _Stopped:
                pass

    threading.Thread(target=run, name="hats-crossmatch", daemon=True).start()
    try:
        while True:
            if context is not None:
                context.check()
            try:
                item = out.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            progress["partitions_done"] += 1
            yield from _pairs(item, lcols, rcols, schema)
    finally:
        stop.set()


def _pairs(df, lcols, rcols, schema: pa.Schema):
    """One Arrow batch of a partition's pairs (``df``: LSDB's frame, columns suffixed ``__l``
    and ``__r``), with the view's ``l__``/``r__`` names and ``schema``'s types.  Columns are
    taken by position: a nested-pandas frame's ``df[name]`` costs more than the conversion."""
    if len(df) == 0:
        return
    if df.index.name != SPATIAL_INDEX:
        df = df.reset_index()
    at = {name: i for i, name in enumerate(df.columns)}
    names = [n + "__l" for n in lcols] + [n + "__r" for n in rcols]
    arrays = [pa.array(df.iloc[:, at[n]], from_pandas=True) for n in names]
    batch = normalize_batch(
        pa.RecordBatch.from_arrays(arrays, names=["l__" + n for n in lcols] + ["r__" + n for n in rcols])
    )
    yield batch if batch.schema == schema else batch.cast(schema)
