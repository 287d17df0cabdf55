"""Bundled HSC-SSP table metadata (``data/``, see PROVENANCE.md), so the gateway starts offline.

Source: the real PDR2 schema (``pdr2_wide_schema.json`` / ``pdr2_dud_schema.json``: every
column name of every table of the Wide and Deep/UltraDeep reruns; ``pdr2_wide_tables.fits``:
table descriptions; ``pdr2_wide_forced_schema.fits``: description and unit of each ``forced``
column).  A Deep/UltraDeep rerun (HSC schema name containing ``dud`` or ``deep``) takes the
D/UD column lists (narrow bands ``n387``, ``n816``, ``n921``), every other rerun the Wide ones.

* Descriptions and units: those of the same ``forced`` column, else of the same column in
  another band (``n816_cmodel_flux`` takes ``i_cmodel_flux``'s text with the band named);
  columns with neither get units from their names (``*_mag`` mag, ``*_flux`` nJy, ``*_ra``/
  ``*_dec`` deg, as ``forced`` has them) and no description.
* Types are inferred from names and units (HSC publishes none): ids int64, positions double,
  fluxes and magnitudes float, flags boolean, counts int.  ``coord`` (the PostgreSQL earth
  value used by coneSearch) is not exposed, nor are the names the schema files cut short at
  45 characters (ending in ``~``: 210 Wide and 410 D/UD names of forced2-5 and meas2).
* UCDs assigned by the plugin (docs/upstreams.md §1.4): ``meta.id;meta.main``,
  ``pos.eq.ra;meta.main``, ``phot.mag;em.opt.I``, ....
* PDR3 and later (``rename_sigma``) rename ``*sigma`` to ``*err`` (docs/upstreams.md §1.3).
* ``photoz_*``: the usual photo-z columns (names per the HSC photo-z papers; not in the PDR2
  schema files, types inferred).  ``masks`` and PDR3's ``summary`` are not offered: no
  column list of them is available offline.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files

from astropy.io import fits
from astropy.io.votable.ucd import check_ucd

from gateway.schema import Column, ForeignKey, Table

DATA = files("vo_gateway_hsc") / "data"
BAND_UCD = {
    "g": "em.opt.B",
    "r": "em.opt.R",
    "i": "em.opt.I",
    "z": "em.opt.I",
    "y": "em.IR.J",
    "n387": "em.opt.U",
    "n816": "em.opt.I",
    "n921": "em.opt.I",
}
BAND_NAME = {
    "g": "HSC-G",
    "r": "HSC-R",
    "i": "HSC-I",
    "z": "HSC-Z",
    "y": "HSC-Y",
    "n387": "NB0387",
    "n816": "NB0816",
    "n921": "NB0921",
}
UNITS = {"degree": "deg", "nano-Jy": "nJy", "mag": "mag"}
BAND_RE = re.compile(r"^(?:a_|m_)?(n387|n816|n921|[grizy])(2)?(?=_|$)")
#: the catalogue tables offered (PDR2 names; forced2..5 and meas2..4 exist because of
#: PostgreSQL's column limit and join on object_id), with their position columns if any
TABLES = {
    "forced": ("ra", "dec"),
    "forced2": None,
    "forced3": None,
    "forced4": None,
    "forced5": None,
    "meas": None,
    "meas2": None,
    "meas3": None,
    "meas4": None,
    "random": ("ra", "dec"),
    "specz": None,
}


@cache
def _schema_file(dud: bool) -> dict[str, list[str]]:
    return json.loads((DATA / ("pdr2_dud_schema.json" if dud else "pdr2_wide_schema.json")).read_text())


@cache
def _table_descriptions() -> dict[str, str]:
    rows = fits.open(DATA / "pdr2_wide_tables.fits")[1].data
    return {r["object"].strip(): r["description"].split("\n")[0].rstrip("~").strip() for r in rows}


def _generic(name: str) -> str | None:
    m = BAND_RE.match(name)
    return None if m is None else name[: m.start(1)] + "{b}" + name[m.end(1) :]


@cache
def _forced_texts() -> tuple[dict, dict]:
    """(exact, band-generic) maps column name -> (description, unit) from the forced FITS."""
    exact, generic = {}, {}
    for row in fits.open(DATA / "pdr2_wide_forced_schema.fits")[1].data:
        name = row["object"].strip().strip('"')
        text, _, unit = row["description"].partition("||")
        value = (text.strip().rstrip("~").strip(), UNITS.get(unit.strip()) if unit.strip() else None)
        exact[name] = value
        g = _generic(name)
        if g is not None:
            generic.setdefault(g, value + (BAND_RE.match(name).group(1),))
    return exact, generic


def _text(name: str) -> tuple[str | None, str | None]:
    exact, generic = _forced_texts()
    if name in exact:
        return exact[name]
    g = _generic(name)
    if g in generic:
        text, unit, source = generic[g]
        band = BAND_NAME[BAND_RE.match(name).group(1)]
        if text and BAND_NAME[source] in text:
            return text.replace(BAND_NAME[source], band), unit
        return (f"{text} ({band})" if text else None), unit
    if re.search(r"_mag(sigma|err)?(_inner)?$", name):
        return None, "mag"
    if re.search(r"_flux(sigma|err)?(_inner)?$", name):
        return None, "nJy"
    if re.search(r"_(ra|dec)(sigma|err)?$", name) and not name.endswith("_flag"):
        return None, "deg"
    return None, None


def _column(name: str, description: str | None, unit: str | None, rename_sigma: bool) -> Column:
    n = re.sub(r"sigma$", "err", name) if rename_sigma else name
    low = n
    m = BAND_RE.match(low)
    band = BAND_UCD.get(m.group(1)) if m else None
    ucd, dt = None, "float"
    if low in ("object_id", "parent_id"):
        dt, ucd = "long", "meta.id;meta.main" if low == "object_id" else "meta.id"
    elif low in ("ra", "dec"):
        dt, ucd = "double", f"pos.eq.{low};meta.main"
    elif unit == "deg" and low.endswith(("_ra", "_dec")):
        dt, ucd = "double", "pos.eq.ra" if low.endswith("_ra") else "pos.eq.dec"
    elif low in ("skymap_id", "tract", "patch", "nchild") or low.endswith(("_count", "_value")) and "inputcount" in low:
        dt, ucd = "int", "meta.id" if low in ("skymap_id", "tract", "patch") else "meta.number"
    elif low in ("patch_s", "field", "specz_name", "specz_original_flag"):
        dt, ucd = "char", "meta.id"
    elif low.startswith(("is", "detect_is", "merge_")) or "flag" in low:
        dt, ucd = "boolean", "meta.code"
    elif unit == "mag":
        ucd = "stat.error;phot.mag" if low.endswith(("err", "sigma")) else "phot.mag"
        if low.startswith("a_"):
            ucd = "phys.absorption.gal"
    elif unit == "nJy":
        ucd = "stat.error;phot.flux" if low.endswith(("err", "sigma")) else "phot.flux"
    elif low.startswith("specz_redshift"):
        ucd = "stat.error;src.redshift" if low.endswith("err") else "src.redshift"
    if ucd and band and ucd.startswith(("phot", "stat.error;phot")):
        ucd = f"{ucd};{band}"
    if ucd and not check_ucd(ucd, check_controlled_vocabulary=True):
        ucd = None
    return Column(
        n,
        dt,
        arraysize="*" if dt == "char" else None,
        unit=unit,
        ucd=ucd,
        description=description or None,
        principal=n in ("object_id", "ra", "dec"),
        indexed=n == "object_id",
    )


def catalog_table(schema: str, name: str, *, dud: bool, rename_sigma: bool) -> Table:
    """One HSC table (``name`` a key of :data:`TABLES`) of a rerun exposed as ADQL ``schema``."""
    cols = []
    for raw in _schema_file(dud)[name]:
        col = raw.strip('"')
        if col == "coord" or col.endswith("_coord") or col.endswith("~"):  # "~": cut at 45 characters
            continue
        text, unit = _text(col)
        cols.append(_column(col, text, unit, rename_sigma))
    pos = TABLES[name]
    return Table(
        schema,
        name,
        cols,
        description=_table_descriptions().get(name) or f"HSC-SSP {name}",
        ra_column=pos[0] if pos else None,
        dec_column=pos[1] if pos else None,
        id_column="object_id",
    )


def forced(schema: str, rename_sigma: bool, dud: bool = False) -> Table:
    return catalog_table(schema, "forced", dud=dud, rename_sigma=rename_sigma)


def rerun_tables(
    schema: str, hsc_schema: str, rename_sigma: bool, photoz_tables: list[str], tables: list[str] | None = None
) -> list[Table]:
    """Every offered table of HSC rerun ``hsc_schema`` (e.g. ``pdr3_dud``) as ADQL ``schema``."""
    dud = "dud" in hsc_schema or "deep" in hsc_schema
    names = list(TABLES) if tables is None else tables
    out = [catalog_table(schema, t, dud=dud, rename_sigma=rename_sigma) for t in names]
    out += [photoz(schema, t) for t in photoz_tables]
    if "forced" in names:  # the split tables and photo-z join forced on object_id (docs/upstreams.md §1.3)
        for t in out:
            if t.name != "forced":
                t.foreign_keys.append(
                    ForeignKey(
                        f"{schema}.{t.name}_forced",
                        f"{schema}.forced",
                        ("object_id",),
                        ("object_id",),
                        f"{t.name} rows of a forced object",
                    )
                )
    return out


PHOTOZ = [
    ("object_id", "long", None, "meta.id;meta.main", "object_id of the forced table"),
    ("photoz_best", "float", None, "src.redshift.phot", "best photometric redshift"),
    ("photoz_mode", "float", None, "src.redshift.phot", "mode of the redshift PDF"),
    ("photoz_median", "float", None, "src.redshift.phot", "median of the redshift PDF"),
    ("photoz_mean", "float", None, "src.redshift.phot", "mean of the redshift PDF"),
    ("photoz_err68_min", "float", None, "stat.error;src.redshift.phot", "lower bound of the 68% interval"),
    ("photoz_err68_max", "float", None, "stat.error;src.redshift.phot", "upper bound of the 68% interval"),
    ("photoz_err95_min", "float", None, "stat.error;src.redshift.phot", "lower bound of the 95% interval"),
    ("photoz_err95_max", "float", None, "stat.error;src.redshift.phot", "upper bound of the 95% interval"),
    ("photoz_conf_best", "float", None, "stat.value", "photo-z confidence of the best estimate"),
    ("photoz_risk_best", "float", None, "stat.value", "photo-z risk of the best estimate"),
]


def photoz(schema: str, name: str) -> Table:
    cols = [
        Column(
            n,
            dt,
            unit=u,
            ucd=ucd,
            description=d + " (type inferred)",
            principal=n in ("object_id", "photoz_best"),
            indexed=n == "object_id",
        )
        for n, dt, u, ucd, d in PHOTOZ
    ]
    return Table(
        schema, name, cols, description=f"Photometric redshifts ({name.split('_', 1)[1]})", id_column="object_id"
    )
