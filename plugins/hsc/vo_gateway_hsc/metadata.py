"""Bundled HSC-SSP table metadata (``data/``, see PROVENANCE.md), so the gateway starts offline.

``forced``: the real 521 PDR2 columns with descriptions and units ("degree" -> deg,
"nano-Jy" -> nJy, "mag"); types inferred from names (ids int64, positions double, fluxes and
magnitudes float, flags boolean); ``coord`` (the PostgreSQL earth value used by coneSearch) is
not exposed.  ``photoz_*``: the usual photo-z columns (names per the HSC photo-z papers; types
inferred).  UCDs assigned by the plugin: ``meta.id;meta.main``, ``pos.eq.ra;meta.main``,
``phot.mag;em.opt.I``, ....  PDR3+ renames ``*sigma`` to ``*err``.
"""
from __future__ import annotations

import re
from importlib.resources import files

from astropy.io import fits
from astropy.io.votable.ucd import check_ucd

from gateway.schema import Column, Table

DATA = files("vo_gateway_hsc") / "data"
BAND_UCD = {"g": "em.opt.B", "r": "em.opt.R", "i": "em.opt.I", "z": "em.opt.I", "y": "em.IR.J"}
UNITS = {"degree": "deg", "nano-Jy": "nJy", "mag": "mag"}


def _band(name: str) -> str | None:
    m = re.match(r"([grizy])(2)?_", name)
    return BAND_UCD.get(m.group(1)) if m else None


def _column(name: str, description: str, unit: str | None, rename_sigma: bool) -> Column:
    n = name.strip('"')
    if rename_sigma:
        n = re.sub(r"sigma$", "err", n)
    low = n
    band = _band(low)
    ucd, dt = None, "float"
    if low in ("object_id", "parent_id"):
        dt, ucd = "long", "meta.id;meta.main" if low == "object_id" else "meta.id"
    elif low in ("ra", "dec"):
        dt, ucd = "double", f"pos.eq.{low};meta.main"
    elif low in ("skymap_id", "tract", "patch", "nchild") or low.endswith(("_count", "_value")) and "inputcount" in low:
        dt, ucd = "int", "meta.id" if low in ("skymap_id", "tract", "patch") else "meta.number"
    elif low == "patch_s" or low == "field":
        dt, ucd = "char", "meta.id"
    elif low.startswith(("is", "detect_is", "merge_")) or "flag" in low:
        dt, ucd = "boolean", "meta.code"
    elif unit == "mag":
        ucd = ("stat.error;phot.mag" if low.endswith(("err", "sigma")) else "phot.mag")
        if low.startswith("a_"):
            ucd = "phys.absorption.gal"
    elif unit == "nJy":
        ucd = "stat.error;phot.flux" if low.endswith(("err", "sigma")) else "phot.flux"
    if ucd and band and ucd.startswith(("phot", "stat.error;phot")):
        ucd = f"{ucd};{band}"
    if ucd and not check_ucd(ucd, check_controlled_vocabulary=True):
        ucd = None
    return Column(n, dt, arraysize="*" if dt == "char" else None, unit=unit, ucd=ucd,
                  description=description or None, principal=n in ("object_id", "ra", "dec"),
                  indexed=n == "object_id")


def forced(schema: str, rename_sigma: bool) -> Table:
    cols = []
    for row in fits.open(DATA / "pdr2_wide_forced_schema.fits")[1].data:
        name = row["object"].strip()
        if name == "coord":
            continue
        text, _, unit = row["description"].partition("||")
        unit = UNITS.get(unit.strip()) if unit.strip() else None
        cols.append(_column(name, text.strip().rstrip("~"), unit, rename_sigma))
    return Table(schema, "forced", cols, description="Forced photometry on coadd images (HSC-SSP forced table)",
                 ra_column="ra", dec_column="dec", id_column="object_id")


PHOTOZ = [("object_id", "long", None, "meta.id;meta.main", "object_id of the forced table"),
          ("photoz_best", "float", None, "src.redshift.phot", "best photometric redshift"),
          ("photoz_mode", "float", None, "src.redshift.phot", "mode of the redshift PDF"),
          ("photoz_median", "float", None, "src.redshift.phot", "median of the redshift PDF"),
          ("photoz_mean", "float", None, "src.redshift.phot", "mean of the redshift PDF"),
          ("photoz_err68_min", "float", None, "stat.error;src.redshift.phot", "lower bound of the 68% interval"),
          ("photoz_err68_max", "float", None, "stat.error;src.redshift.phot", "upper bound of the 68% interval"),
          ("photoz_err95_min", "float", None, "stat.error;src.redshift.phot", "lower bound of the 95% interval"),
          ("photoz_err95_max", "float", None, "stat.error;src.redshift.phot", "upper bound of the 95% interval"),
          ("photoz_conf_best", "float", None, "stat.value", "photo-z confidence of the best estimate"),
          ("photoz_risk_best", "float", None, "stat.value", "photo-z risk of the best estimate")]


def photoz(schema: str, name: str) -> Table:
    cols = [Column(n, dt, unit=u, ucd=ucd, description=d + " (type inferred)", principal=n in ("object_id", "photoz_best"),
                   indexed=n == "object_id") for n, dt, u, ucd, d in PHOTOZ]
    return Table(schema, name, cols, description=f"Photometric redshifts ({name.split('_', 1)[1]})")
