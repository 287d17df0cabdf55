"""Bundled metadata of the MAST catalogs (``data/``, see its PROVENANCE.md), so the gateway
starts offline; cleaned of upstream quirks: the string ``"NULL"`` for no unit/UCD, malformed
UCDs (``phot.mag;em.opt;;meta.main``), and UCDs assigned where MAST publishes none.

* ``ps1_dr2_mean``: the real ``panstarrs/dr2/mean/metadata`` answer (124 columns).
* ``hsc3_summary``: HSC v3 summary (magaper2 or magauto): 19 object columns + 133 filters x
  (mag, MAD, N) = 418 columns, names from the MAST TAP view, descriptions from STScI.
* ``hsc3_detailed``: the 39 columns of HSC v3 detailed (docs/upstreams.md §2.2).
* the other tables: their real column names from MAST's TAP views, types inferred from the
  names; the API's ``/metadata`` replaces them whenever MAST is reachable (see the archive).
"""

from __future__ import annotations

import json
from importlib.resources import files

from astropy.io.votable.ucd import check_ucd

from gateway.schema import VOTABLE_DATATYPES, Column, Table

DATA = files("vo_gateway_mast") / "data"


def clean_ucd(ucd) -> str | None:
    """MAST's UCD text made valid UCD1+ or dropped: ``NULL`` -> None, empty atoms removed."""
    if not ucd or ucd == "NULL":
        return None
    ucd = ";".join(a for a in ucd.split(";") if a and ":" not in a)
    return ucd if ucd and check_ucd(ucd, check_controlled_vocabulary=True) else None


def _null(v):
    return None if v in (None, "NULL", "") else v


def ps1_dr2_mean(schema: str, name: str = "mean") -> Table:
    cols = []
    for m in json.loads((DATA / "panstarrs_dr2_mean_metadata.json").read_text()):
        dt = m.get("datatype") if m.get("datatype") in VOTABLE_DATATYPES else "char"
        size = _null(m.get("arraysize"))
        if dt != "char" or size in ("1",):
            size = None
        cols.append(
            Column(
                m["name"],
                dt,
                arraysize=size,
                unit=_null(m.get("unit")),
                ucd=clean_ucd(m.get("ucd")),
                utype=_null(m.get("utype")),
                description=_null(m.get("description")),
                principal=m.get("principal") not in (None, "NULL", "0", 0),
            )
        )
    return Table(
        schema,
        name,
        cols,
        description="Pan-STARRS DR2 mean object table (MeanObjectView): mean "
        "positions and grizy PSF/Kron/aperture magnitudes of every object",
        ra_column="raMean",
        dec_column="decMean",
        id_column="objID",
    )


SUMMARY_HEAD = [
    ("MatchID", "long", None, "meta.id;meta.main", "identifier for the match"),
    ("MatchRA", "double", "deg", "pos.eq.ra;meta.main", "right ascension coordinate of the match position"),
    ("MatchDec", "double", "deg", "pos.eq.dec;meta.main", "declination coordinate of the match position"),
    ("DSigma", "double", "mas", "stat.stdev;pos", "standard deviation of source positions in match"),
    (
        "AbsCorr",
        "char",
        None,
        "meta.code",
        "indicator of whether the match contains sources that are aligned to a standard catalog",
    ),
    (
        "NumFilters",
        "int",
        None,
        "meta.number",
        "number of filters in match with sources detected in the aper2 aperture",
    ),
    ("NumVisits", "int", None, "meta.number", "number of visits in match with sources detected in the aper2 aperture"),
    (
        "NumImages",
        "int",
        None,
        "meta.number",
        "number of Hubble Legacy Archive single filter, visit-combined (level 2) "
        "images in match with sources detected in the aper2 aperture",
    ),
    ("StartTime", "char", None, "time.start;obs.exposure", "earliest start time of exposures in match"),
    ("StopTime", "char", None, "time.end;obs.exposure", "latest stop time of exposures in match"),
    (
        "StartMJD",
        "double",
        "d",
        "time.start;obs.exposure",
        "modified Julian date (MJD) for earliest start time of exposures in match",
    ),
    (
        "StopMJD",
        "double",
        "d",
        "time.end;obs.exposure",
        "modified Julian date (MJD) for latest stop time of exposures in match",
    ),
    ("TargetName", "char", None, "meta.id;src", "name of a target for an exposure in match"),
    (
        "CI",
        "double",
        None,
        "phys.size;src",
        "average normalized concentration index for sources detected in the aper2 aperture within the match",
    ),
    ("CI_Sigma", "double", None, "stat.stdev", "standard deviation of normalized concentration index values"),
    (
        "KronRadius",
        "double",
        "arcsec",
        "phys.angSize;src",
        "average Kron radius for sources detected in the aper2 aperture within the match",
    ),
    ("KronRadius_Sigma", "double", "arcsec", "stat.stdev", "standard deviation of Kron radius values"),
    (
        "Extinction",
        "double",
        "mag",
        "phys.absorption;em.opt",
        "extinction from NED along the line of sight to the match",
    ),
    (
        "SpectrumFlag",
        "char",
        None,
        "meta.code",
        "Y/N indicator of whether there is a spectrum in the Hubble Legacy Archive for this match",
    ),
]
INSTRUMENT = {"A": "ACS/WFC", "W3": "WFC3", "W2": "WFPC2"}


def summary_filters() -> list[str]:
    return [
        line.strip()
        for line in (DATA / "hsc_v3_summary_filters.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def hsc3_summary(schema: str, name: str, magtype: str = "aper2") -> Table:
    cols = [
        Column(
            n,
            dt,
            arraysize="*" if dt == "char" else None,
            unit=u,
            ucd=ucd,
            description=d,
            principal=n in ("MatchID", "MatchRA", "MatchDec", "NumFilters", "NumVisits", "NumImages"),
            indexed=n == "MatchID",
        )
        for n, dt, u, ucd, d in SUMMARY_HEAD
    ]
    for f in summary_filters():
        inst, band = f.split("_", 1)
        what = f"{INSTRUMENT.get(inst, inst)} {band}"
        cols += [
            Column(f, "double", unit="mag", ucd="phot.mag", description=f"mean {magtype} magnitude in {what} (ABMAG)"),
            Column(
                f"{f}_MAD",
                "double",
                unit="mag",
                ucd="stat.stdev;phot.mag",
                description=f"median absolute deviation of the {magtype} magnitudes in {what}",
            ),
            Column(f"{f}_N", "int", ucd="meta.number", description=f"number of measurements in {what}"),
        ]
    return Table(
        schema,
        name,
        cols,
        description=f"Hubble Source Catalog v3 summary ({magtype} magnitudes): one row "
        "per match with multi-filter mean photometry",
        ra_column="MatchRA",
        dec_column="MatchDec",
        id_column="MatchID",
    )


DETAILED = [
    ("CatID", "long", None, "meta.id", "catalog identifier"),
    ("MatchID", "long", None, "meta.id;meta.main", "identifier for the match"),
    ("MemID", "long", None, "meta.id", "member identifier within the match"),
    ("SourceID", "long", None, "meta.id", "identifier of the source in its image"),
    ("ImageID", "long", None, "meta.id;obs.image", "identifier of the image"),
    ("Det", "char", None, "meta.code", "detection flag"),
    ("MatchRA", "double", "deg", "pos.eq.ra;meta.main", "right ascension of the match position"),
    ("MatchDec", "double", "deg", "pos.eq.dec;meta.main", "declination of the match position"),
    ("SourceRA", "double", "deg", "pos.eq.ra", "right ascension of the source"),
    ("SourceDec", "double", "deg", "pos.eq.dec", "declination of the source"),
    ("D", "double", "mas", "pos.angDistance", "distance of the source from the match position"),
    ("DSigma", "double", "mas", "stat.stdev;pos", "standard deviation of source positions in the match"),
    ("AbsCorr", "char", None, "meta.code", "aligned to a standard catalog (Y/N)"),
    ("XImage", "double", "pix", "pos.cartesian.x;instr.det", "x position in the image"),
    ("YImage", "double", "pix", "pos.cartesian.y;instr.det", "y position in the image"),
    ("ImageName", "char", None, "meta.id;obs.image", "Hubble Legacy Archive image name (for HLA cutouts)"),
    ("Instrument", "char", None, "meta.id;instr", "instrument"),
    ("Mode", "char", None, "meta.code;instr.setup", "observing mode"),
    ("Detector", "char", None, "meta.id;instr.det", "detector"),
    ("Aperture", "char", None, "meta.id;instr.setup", "aperture"),
    ("ExposureTime", "double", "s", "time.duration;obs.exposure", "exposure time"),
    ("StartTime", "char", None, "time.start;obs.exposure", "start time of the exposure"),
    ("StopTime", "char", None, "time.end;obs.exposure", "stop time of the exposure"),
    ("StartMJD", "double", "d", "time.start;obs.exposure", "MJD of the start of the exposure"),
    ("StopMJD", "double", "d", "time.end;obs.exposure", "MJD of the end of the exposure"),
    ("WaveLength", "double", "nm", "em.wl.effective", "central wavelength of the filter"),
    ("Filter", "char", None, "meta.id;instr.filter", "filter"),
    ("TargetName", "char", None, "meta.id;src", "name of the exposure's target"),
    ("FluxAper2", "double", "uJy", "phot.flux.density", "aperture (aper2) flux"),
    ("MagAper2", "double", "mag", "phot.mag", "aperture (aper2) magnitude (ABMAG)"),
    ("MagAuto", "double", "mag", "phot.mag", "Kron-like (MAG_AUTO) magnitude (ABMAG)"),
    ("PropID", "int", None, "meta.id;obs.proposal", "HST proposal identifier"),
    ("CI", "double", None, "phys.size;src", "normalized concentration index"),
    ("KronRadius", "double", "arcsec", "phys.angSize;src", "Kron radius"),
    ("Flags", "int", None, "meta.code.qual", "Source Extractor flags"),
    ("HTMID", "long", None, "pos.HTM", "hierarchical triangular mesh index"),
    ("X", "double", None, "pos.cartesian.x", "unit vector x"),
    ("Y", "double", None, "pos.cartesian.y", "unit vector y"),
    ("Z", "double", None, "pos.cartesian.z", "unit vector z"),
]


def hsc3_detailed(schema: str, name: str = "detailed") -> Table:
    cols = [
        Column(
            n,
            dt,
            arraysize="*" if dt == "char" else None,
            unit=u,
            ucd=ucd,
            description=d,
            principal=n in ("MatchID", "SourceID", "StartMJD", "Filter", "MagAper2", "ImageName"),
            indexed=n in ("MatchID", "SourceID"),
        )
        for n, dt, u, ucd, d in DETAILED
    ]
    return Table(
        schema,
        name,
        cols,
        description="Hubble Source Catalog v3 detailed: every measurement of every match (multi-epoch light curves)",
        ra_column="MatchRA",
        dec_column="MatchDec",
        id_column="MatchID",
    )


def tap_columns(view: str) -> list[str]:
    """Column names of a MAST TAP view (``dbo.X``) from the bundled real list."""
    import ast
    import re

    text = (DATA / "mast_vo_tap_hsc_ps1dr2_table_columns.txt").read_text()
    i = text.find(view + "\n")
    if i < 0:
        raise KeyError(view)
    return ast.literal_eval(re.search(r"Columns=(\[.*?\])", text[i:], re.S).group(1))


def guessed_column(name: str, ra: str | None, dec: str | None, idc: str | None) -> Column:
    """A column typed from its name (MAST naming conventions), marked as inferred."""
    n = name.strip('"')
    low = n.lower()
    note = " (type inferred from the name; MAST's /metadata replaces it when reachable)"
    if n == ra or n == dec:
        return Column(
            n,
            "double",
            unit="deg",
            ucd="pos.eq.ra;meta.main" if n == ra else "pos.eq.dec;meta.main",
            description=("right ascension" if n == ra else "declination") + note,
            principal=True,
        )
    if n == idc:
        return Column(n, "long", ucd="meta.id;meta.main", description="identifier" + note, principal=True, indexed=True)
    if low.endswith("id"):
        return Column(n, "long", ucd="meta.id", description="identifier" + note)
    if low in ("filter", "imagename", "instrument", "detector", "objname") or low.endswith("name"):
        return Column(n, "char", arraysize="*", ucd="meta.id", description=n + note)
    if "mag" in low:
        ucd = "stat.error;phot.mag" if low.endswith(("err", "sigma", "std")) else "phot.mag"
        return Column(n, "double", unit="mag", ucd=ucd, description=n + note)
    if low.startswith(("ra", "dec")) and not low.startswith("rad"):
        return Column(
            n, "double", unit="deg", ucd="stat.error;pos" if low.endswith("err") else "pos.eq", description=n + note
        )
    if low.startswith(("num", "ndet", "nstack", "nwarp")) or (low.startswith("n") and n[1:2].isupper()):
        return Column(n, "int", ucd="meta.number", description=n + note)
    if "flag" in low:
        return Column(n, "int", ucd="meta.code.qual", description=n + note)
    if "mjd" in low or low.startswith("epoch") or low == "obstime":
        return Column(n, "double", unit="d", ucd="time.epoch", description=n + note)
    return Column(n, "double", description=n + note)


def from_tap_view(view: str, ra: str | None, dec: str | None, idc: str, description: str):
    def build(schema: str, name: str) -> Table:
        cols = [guessed_column(c, ra, dec, idc) for c in tap_columns(view)]
        return Table(schema, name, cols, description=description, ra_column=ra, dec_column=dec, id_column=idc)

    return build


def hsc2(kind: str):
    """HSC v2: the v3 column sets with ``_Sigma`` for ``_MAD`` (docs/upstreams.md §2.2)."""

    def build(schema: str, name: str) -> Table:
        t = hsc3_summary(schema, name, kind) if kind != "detailed" else hsc3_detailed(schema, name)
        cols = [
            Column(
                c.name[:-4] + "_Sigma",
                c.datatype,
                unit=c.unit,
                ucd=c.ucd,
                description=c.description.replace("median absolute deviation", "standard deviation"),
            )
            if c.name.endswith("_MAD")
            else c
            for c in t.columns
        ]
        return Table(
            schema,
            name,
            cols,
            description=t.description.replace("v3", "v2"),
            ra_column=t.ra_column,
            dec_column=t.dec_column,
            id_column=t.id_column,
        )

    return build


BUNDLED = {
    "panstarrs/dr2/mean": ps1_dr2_mean,
    "hsc/v3/summary/magaper2": lambda s, n: hsc3_summary(s, n, "aper2"),
    "hsc/v3/summary/magauto": lambda s, n: hsc3_summary(s, n, "auto"),
    "hsc/v3/detailed": hsc3_detailed,
    "hsc/v3/propermotions": from_tap_view(
        "dbo.ProperMotionsView", "raMean", "decMean", "ObjID", "HSC v3 SWEEPS proper motions (one row per object)"
    ),
    "hsc/v3/sourcepositions": from_tap_view(
        "dbo.SourcePositionsView",
        "RA",
        "Dec",
        "SourceID",
        "HSC v3 SWEEPS source positions (per-epoch positions of each object)",
    ),
    "hsc/v3/hcvsummary": from_tap_view(
        "dbo.HCVsummaryView", None, None, "MatchID", "Hubble Catalog of Variables: one row per variable and filter"
    ),
    "hsc/v3/hcv": from_tap_view(
        "dbo.HCVdetailedView", None, None, "MatchID", "Hubble Catalog of Variables: light-curve points"
    ),
    "hsc/v2/summary/magaper2": hsc2("aper2"),
    "hsc/v2/summary/magauto": hsc2("auto"),
    "hsc/v2/detailed": hsc2("detailed"),
    "panstarrs/dr1/mean": ps1_dr2_mean,
    "panstarrs/dr2/stack": from_tap_view(
        "dbo.StackObjectView", "raMean", "decMean", "objID", "Pan-STARRS DR2 stack object table (StackObjectView)"
    ),
    "panstarrs/dr1/stack": from_tap_view(
        "dbo.StackObjectView", "raMean", "decMean", "objID", "Pan-STARRS DR1 stack object table (StackObjectView)"
    ),
    "panstarrs/dr2/detection": from_tap_view(
        "dbo.Detection", "ra", "dec", "objID", "Pan-STARRS DR2 single-epoch detections"
    ),
    "panstarrs/dr2/forced_mean": from_tap_view(
        "dbo.ForcedMeanObjectView",
        "raMean",
        "decMean",
        "objID",
        "Pan-STARRS DR2 forced mean photometry (ForcedMeanObjectView)",
    ),
}
