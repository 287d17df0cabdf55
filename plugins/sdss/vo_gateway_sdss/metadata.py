"""SDSS tables and columns, from SkyServer's own column documentation: ``dbo.fDocColumns`` as
astroquery 0.4.11 ships it for DR12 (``data/PhotoObjAll_dr12.json``, ``data/SpecObjAll_dr12.json``)
and the ``--/U``/``--/D`` documentation of SkyServer's schema source, which its schema browser
shows (``data/Field_sqlloader.json``, ``data/Frame_sqlloader.json``); see the plugin README for
provenance.  Types map from SQL Server to VOTable (``bigint`` ->
``long``, ``real`` -> ``float``, ``float`` -> ``double``, ``smallint`` -> ``short``, ``tinyint``
-> ``unsignedByte``, ``varchar`` -> ``char(*)``); units are SkyServer's; UCDs are added for the
columns users select by meaning (positions, ids, PSF/model/Petrosian magnitudes, redshift).

``specObjID`` values exceed 2**63 from eBOSS on (plate << 50), which no VOTable integer type
holds: those columns are ``char`` holding the exact decimal digits.

Tables offered (each a view or table SkyServer has under that name): ``PhotoObjAll``,
``PhotoObj`` (primary objects), ``Star``, ``Galaxy`` with PhotoObjAll's columns; ``SpecObjAll``
and ``SpecObj`` (clean spectra) with SpecObjAll's; ``Field`` (one row per imaging field: run,
camcol, field, centre and ra/dec range, per-band MJD and PSF width) and ``Frame`` (the fields'
astrometry per JPEG zoom level, without its ``img`` JPEG column, which CSV cannot carry).
``PhotoTag`` is not offered: SkyServer's schema has had no PhotoTag since 2013 (DR10).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from gateway.schema import Column, ForeignKey, Table

DATA = Path(__file__).parent / "data"
SQL_TYPES = {
    "bigint": ("long", None),
    "int": ("int", None),
    "smallint": ("short", None),
    "tinyint": ("unsignedByte", None),
    "real": ("float", None),
    "float": ("double", None),
    "varchar": ("char", "*"),
    "varbinary": ("unsignedByte", "*"),
}
UNSIGNED_IDS = {"specobjid"}  # beyond 2**63: exact digits as text
BANDS = {"u": "em.opt.U", "g": "em.opt.B", "r": "em.opt.R", "i": "em.opt.I", "z": "em.opt.I"}


def _ucd(name: str) -> str | None:
    n = name.lower()
    if n == "ra":
        return "pos.eq.ra;meta.main"
    if n == "dec":
        return "pos.eq.dec;meta.main"
    if n in ("objid", "specobjid"):
        return "meta.id;meta.main"
    if n == "bestobjid":
        return "meta.id.cross"
    for kind in ("psfmag", "modelmag", "petromag", "cmodelmag", "fibermag"):
        if n.startswith(kind + "_") and n[-1] in BANDS:
            return f"phot.mag;{BANDS[n[-1]]}"
        if n.startswith(kind + "err_") and n[-1] in BANDS:
            return f"stat.error;phot.mag;{BANDS[n[-1]]}"
    return None


#: column source -> bundled documentation file
SOURCES = {
    "PhotoObjAll": "PhotoObjAll_dr12.json",
    "SpecObjAll": "SpecObjAll_dr12.json",
    "Field": "Field_sqlloader.json",
    "Frame": "Frame_sqlloader.json",
}


@cache
def columns(source: str) -> tuple[Column, ...]:
    """The columns of a :data:`SOURCES` table from the bundled documentation."""
    rows = json.loads((DATA / SOURCES[source]).read_text())[0]["Rows"]
    out = []
    for r in rows:
        name = r["name"].lower()
        datatype, arraysize = SQL_TYPES[r["type"]]
        desc = (r["description"] or "").strip() or None
        if name in UNSIGNED_IDS:
            datatype, arraysize = "char", "20"
            desc = (desc or "") + " (unsigned 64-bit; written as its exact decimal digits)"
        ucd = _ucd(name) or (r["ucd"] or None)
        if source == "SpecObjAll" and name == "z":
            ucd = "src.redshift"
        if source in ("Field", "Frame") and name == "fieldid":
            ucd = "meta.id;meta.main"
        if name.startswith("mjd") and (r["unit"] or "").lower() in ("", "days", "mjd"):
            ucd = ucd or "time.epoch"
        out.append(Column(name, datatype, arraysize, unit=r["unit"] or None, ucd=ucd, description=desc))
    return tuple(out)


#: name -> (column source, description, SkyServer's id column)
TABLES = {
    "PhotoObjAll": ("PhotoObjAll", "every photometric object of the imaging survey", "objid"),
    "PhotoObj": ("PhotoObjAll", "the primary photometric objects (mode = 1): one per object on the sky", "objid"),
    "Star": ("PhotoObjAll", "primary objects classified as stars (type = 6)", "objid"),
    "Galaxy": ("PhotoObjAll", "primary objects classified as galaxies (type = 3)", "objid"),
    "SpecObjAll": ("SpecObjAll", "every spectrum", "specobjid"),
    "SpecObj": ("SpecObjAll", "the clean science spectra (one per object)", "specobjid"),
    "Field": (
        "Field",
        "every imaging field (2048 x 1489 pixels of a camera column): centre, ra/dec range, per-band MJD, PSF width and calibration",
        "fieldid",
    ),
    "Frame": ("Frame", "the astrometry of every field at each JPEG zoom level", "fieldid"),
}


def sdss_tables(schema: str, release: str) -> list[Table]:
    out = []
    for name, (source, what, idc) in TABLES.items():
        fks = []
        if source == "SpecObjAll":
            fks = [
                ForeignKey(
                    f"{schema}.{name}.photo",
                    f"{schema}.PhotoObjAll",
                    ("bestobjid",),
                    ("objid",),
                    "the photometric object of the spectrum",
                )
            ]
        out.append(
            Table(
                schema,
                name,
                list(columns(source)),
                description=f"SDSS {release.upper()} {name}: {what} (SkyServer dbo.{name})",
                ra_column="ra",
                dec_column="dec",
                id_column=idc,
                foreign_keys=fks,
            )
        )
    return out
