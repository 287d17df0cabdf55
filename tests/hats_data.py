"""HATS catalogues for the ``hats`` kind's tests and benchmarks, built with hats-import (a
catalogue and its margin cache, as a collection) and kept under ``var/hats/`` keyed by their
inputs, so each is built once per checkout (a file lock keeps parallel test workers from
building the same one twice).

* :func:`gaia`: the embedded Gaia DR3 G < 10 table (482,176 rows), 10" margin, and a HATS
  index catalogue of ``source_id`` (:func:`_add_index`).
* :func:`generated`: ``n`` reproducible rows: a fifth of them within 0.5" of a Gaia star (so a
  crossmatch has pairs), the rest uniform on the sphere, with a magnitude and an id.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "var" / "hats"
GAIA = ROOT / "data/demo/gaia_dr3_g10.parquet"


def _build(name: str, source: Path, threshold: int, margin_arcsec: float) -> Path:
    from dask.distributed import Client
    from hats_import.collection.arguments import CollectionArguments
    from hats_import.pipeline import pipeline_with_client

    STORE.mkdir(parents=True, exist_ok=True)
    out = STORE / name
    with open(STORE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "collection.properties").exists():
            return out
        shutil.rmtree(out, ignore_errors=True)
        tmp = STORE / f"{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        args = (
            CollectionArguments(output_artifact_name=name, output_path=STORE, progress_bar=False, tmp_dir=tmp)
            .catalog(
                input_file_list=[str(source)],
                file_reader="parquet",
                ra_column="ra",
                dec_column="dec",
                pixel_threshold=threshold,
                highest_healpix_order=9,
            )
            .add_margin(margin_threshold=margin_arcsec, is_default=True)
        )
        with Client(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as client:
            pipeline_with_client(args, client)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _add_index(collection: Path, column: str) -> None:
    """Add an index catalogue of ``column`` to ``collection``, in the layout of hats-import's
    ``add_index`` (one row per primary row: the value, ``Norder``, ``Npix``, sorted by the
    value; ``dataset/_metadata``; ``hats.properties`` with ``dataproduct_type=index``; the
    collection's ``all_indexes``).  hats-import's own index pipeline refuses Python 3.11 with
    Dask outside 2025.3, and with its version check bypassed it stalls in dask-expr's
    repartitioning: the rows here come from the primary partitions directly.  The tests check
    what the index finds against numpy."""
    import hats
    from hats.catalog import TableProperties
    from hats.io import parquet_metadata, pixel_catalog_file

    name = f"{collection.name}_{column}"
    props = collection / "collection.properties"
    if name in props.read_text():
        return
    coll = hats.read_hats(collection)
    main = coll.main_catalog
    parts = []
    for pixel in main.get_healpix_pixels():
        path = pixel_catalog_file(main.catalog_base_dir, pixel, npix_suffix=main.catalog_info.npix_suffix)
        values = pq.read_table(str(path), columns=[column]).column(column)
        n = len(values)
        parts.append(
            pa.table(
                {
                    column: values,
                    "Norder": pa.array(np.full(n, pixel.order, np.uint8)),
                    "Npix": pa.array(np.full(n, pixel.pixel, np.uint64)),
                }
            )
        )
    table = pa.concat_tables(parts).sort_by(column)
    out = collection / name
    shutil.rmtree(out, ignore_errors=True)
    (out / "dataset").mkdir(parents=True)
    pq.write_table(table, out / "dataset" / "index.parquet", row_group_size=20_000)
    parquet_metadata.write_parquet_metadata(out, order_by_healpix=False)
    TableProperties(
        catalog_name=name,
        catalog_type="index",
        total_rows=table.num_rows,
        primary_catalog=str(main.catalog_base_dir),
        indexing_column=column,
    ).to_properties_file(out)
    props.write_text(props.read_text().rstrip("\n") + f"\nall_indexes={column} {name}\ndefault_index={column}\n")


def gaia() -> Path:
    """The Gaia collection (partitions of at most 20,000 rows) with a ``source_id`` index."""
    out = _build("gaia", GAIA, 20_000, 10.0)
    with open(STORE / "gaia.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _add_index(out, "source_id")
    return out


def generated_table(n: int, seed: int = 20) -> pa.Table:
    """The rows of :func:`generated` (the ground truth the tests compare with)."""
    rng = np.random.default_rng(seed)
    g = pq.read_table(GAIA, columns=["ra", "dec"])
    near = n // 5
    pick = rng.integers(0, g.num_rows, near)
    off = rng.uniform(0, 0.5 / 3600, near)
    ang = rng.uniform(0, 2 * np.pi, near)
    gra = g.column("ra").to_numpy()[pick]
    gdec = g.column("dec").to_numpy()[pick]
    dec_near = np.clip(gdec + off * np.sin(ang), -90, 90)
    ra_near = (gra + off * np.cos(ang) / np.maximum(np.cos(np.radians(gdec)), 1e-6)) % 360.0
    far = n - near
    ra_far = rng.uniform(0, 360, far)
    dec_far = np.degrees(np.arcsin(rng.uniform(-1, 1, far)))
    return pa.table(
        {
            "obj_id": np.arange(1, n + 1, dtype=np.int64),
            "ra": np.concatenate([ra_near, ra_far]),
            "dec": np.concatenate([dec_near, dec_far]),
            "mag": rng.uniform(12, 24, n).astype(np.float32),
        }
    )


def generated(n: int, seed: int = 20) -> Path:
    """A generated collection of ``n`` rows (partitions of at most n/40 rows), 10" margin."""
    name = f"gen_{n}_{seed}"
    STORE.mkdir(parents=True, exist_ok=True)
    src = STORE / f"{name}.parquet"
    if not src.exists():
        part = src.with_suffix(".part")
        pq.write_table(generated_table(n, seed), part)
        part.replace(src)
    return _build(name, src, max(20_000, n // 40), 10.0)
