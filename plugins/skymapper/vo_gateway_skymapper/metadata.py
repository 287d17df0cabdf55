"""Bundled metadata of the SkyMapper master tables, so the gateway starts offline.

``dr2.master``: the full column list of docs/upstreams.md §3.4 (derived from the official table
browser ``skymapper.anu.edu.au/table-browser/dr2/``); ``dr4.master``: the columns of §3.5 that
were seen in queries that ran; ``dr2.photometry``/``dr4.photometry``: see :func:`photometry`.  SkyMapper publishes no UCDs in these sources; the UCDs here are
assigned by the plugin (UCD1+).  When SkyMapper's TAP is configured and reachable its
TAP_SCHEMA replaces this snapshot.
"""

from __future__ import annotations

from gateway.schema import Column, Table

BANDS = "uvgriz"
BAND_UCD = {"u": "em.opt.U", "v": "em.opt.U", "g": "em.opt.B", "r": "em.opt.R", "i": "em.opt.I", "z": "em.opt.I"}
XMATCH = ["dr1", "twomass", "allwise", "ucac4", "refcat2", "ps1_dr1", "galex_guv"]


def _c(name, datatype, description, unit=None, ucd=None, arraysize=None, principal=False, indexed=False):
    return Column(
        name,
        datatype,
        arraysize=arraysize,
        unit=unit,
        ucd=ucd,
        description=description,
        principal=principal,
        indexed=indexed,
    )


def _common_head() -> list[Column]:
    return [
        _c("object_id", "long", "SkyMapper object identifier", ucd="meta.id;meta.main", principal=True, indexed=True),
        _c(
            "raj2000", "double", "Mean ICRS right ascension of the object", "deg", "pos.eq.ra;meta.main", principal=True
        ),
        _c(
            "dej2000",
            "double",
            "Mean ICRS declination of the object",
            "deg",
            "pos.eq.dec;meta.main",
            principal=True,
            indexed=True,
        ),
    ]


def _band_quality(b: str) -> list[Column]:
    return [
        _c(f"{b}_flags", "short", f"Bitwise OR of Source Extractor flags in {b}", ucd="meta.code.qual"),
        _c(
            f"{b}_nimaflags",
            "int",
            f"Number of flagged pixels from bad, saturated or crosstalk pixels in {b}",
            ucd="meta.number",
        ),
        _c(f"{b}_ngood", "short", f"Number of good measurements in {b}", ucd="meta.number"),
        _c(f"{b}_nch", "short", f"Number of measurements in {b} (incl. flagged)", ucd="meta.number"),
        _c(f"{b}_nclip", "short", f"Number of measurements in {b} clipped as outliers", ucd="meta.number"),
    ]


def _band_phot(b: str) -> list[Column]:
    u = BAND_UCD[b]
    return [
        _c(f"{b}_psf", "float", f"Mean PSF magnitude in {b} (AB)", "mag", f"phot.mag;{u}", principal=True),
        _c(f"e_{b}_psf", "float", f"Error of the mean PSF magnitude in {b}", "mag", f"stat.error;phot.mag;{u}"),
        _c(
            f"{b}_rchi2var",
            "float",
            f"Reduced chi-square of the PSF magnitudes in {b} about their mean",
            ucd="stat.fit.chi2",
        ),
        _c(f"{b}_petro", "float", f"Mean Petrosian magnitude in {b} (AB)", "mag", f"phot.mag;{u}"),
        _c(f"e_{b}_petro", "float", f"Error of the mean Petrosian magnitude in {b}", "mag", f"stat.error;phot.mag;{u}"),
    ]


def _xmatch(name: str, id_type: str = "long") -> list[Column]:
    return [
        _c(
            f"{name}_id"
            if name not in ("twomass", "allwise", "ucac4")
            else {"twomass": "twomass_key", "allwise": "allwise_cntr", "ucac4": "ucac4_mpos"}[name],
            id_type,
            f"Identifier of the nearest {name} match",
            ucd="meta.id.cross",
        ),
        _c(f"{name}_dist", "float", f"Distance to the nearest {name} match", "arcsec", "pos.angDistance"),
    ]


def dr2_master(schema: str) -> Table:
    cols = _common_head() + [
        _c("e_raj2000", "int", "RMS variation around the mean right ascension", "mas", "stat.error;pos.eq.ra"),
        _c("e_dej2000", "int", "RMS variation around the mean declination", "mas", "stat.error;pos.eq.dec"),
        _c(
            "smss_j",
            "char",
            "SkyMapper Southern Survey designation (SMSS JHHMMSS.ss+DDMMSS.s)",
            ucd="meta.id",
            arraysize="18",
        ),
        _c("mean_epoch", "double", "Mean epoch of the observations", "d", "time.epoch"),
        _c("rms_epoch", "float", "RMS variation around the mean epoch", "d", "stat.stdev;time.epoch"),
        _c("glon", "float", "Galactic longitude", "deg", "pos.galactic.lon"),
        _c("glat", "float", "Galactic latitude", "deg", "pos.galactic.lat"),
        _c("flags", "short", "Bitwise OR of Source Extractor flags across all observations", ucd="meta.code.qual"),
        _c(
            "nimaflags",
            "int",
            "Flagged pixels from bad, saturated or crosstalk pixels across all observations",
            ucd="meta.number",
        ),
        _c("ngood", "short", "Number of good observations in all bands", ucd="meta.number"),
        _c("ngood_min", "short", "Minimum number of good observations in any band", ucd="meta.number"),
        _c("nch_max", "short", "Maximum number of observations in any band", ucd="meta.number"),
        _c("density", "float", "Local source density", ucd="src.density"),
    ]
    for b in BANDS:
        cols += _band_quality(b)
    cols += [
        _c("class_star", "float", "Maximum stellarity index (0 galaxy, 1 star)", ucd="src.class.starGalaxy"),
        _c("flags_psf", "int", "Bitwise OR of PSF fitting flags", ucd="meta.code.qual"),
        _c("radius_petro", "float", "Mean Petrosian radius", ucd="phys.angSize;src"),
    ]
    for b in BANDS:
        cols += _band_phot(b)
    cols += [
        _c("ebmv_sfd", "float", "E(B-V) from Schlegel, Finkbeiner and Davis (1998)", "mag", "phot.color.excess"),
        _c("prox", "float", "Distance to the nearest neighbouring SkyMapper object", "arcsec", "pos.angDistance"),
        _c("prox_id", "long", "object_id of the nearest neighbouring SkyMapper object", ucd="meta.id.cross"),
    ]
    for m in XMATCH:
        cols += _xmatch(m)
    cols += [
        _c("gaia_dr2_id1", "long", "Gaia DR2 source_id of the nearest match", ucd="meta.id.cross"),
        _c("gaia_dr2_dist1", "float", "Distance to the nearest Gaia DR2 match", "arcsec", "pos.angDistance"),
        _c("gaia_dr2_id2", "long", "Gaia DR2 source_id of the second nearest match", ucd="meta.id.cross"),
        _c("gaia_dr2_dist2", "float", "Distance to the second nearest Gaia DR2 match", "arcsec", "pos.angDistance"),
    ]
    return Table(
        schema,
        "master",
        cols,
        description="SkyMapper DR2 master table: one row per astrophysical object",
        ra_column="raj2000",
        dec_column="dej2000",
        id_column="object_id",
    )


def dr4_master(schema: str) -> Table:
    cols = _common_head() + [
        _c("mean_epoch", "double", "Mean epoch of the observations", "d", "time.epoch"),
        _c("flags", "short", "Bitwise OR of Source Extractor flags across all observations", ucd="meta.code.qual"),
        _c("nimaflags", "int", "Flagged pixels from bad, saturated or crosstalk pixels", ucd="meta.number"),
        _c("flags_psf", "int", "Bitwise OR of PSF fitting flags", ucd="meta.code.qual"),
        _c("ngood", "short", "Number of good observations in all bands", ucd="meta.number"),
        _c("class_star", "float", "Maximum stellarity index (0 galaxy, 1 star)", ucd="src.class.starGalaxy"),
        _c("chi2_psf", "float", "Chi-square of the PSF fit", ucd="stat.fit.chi2"),
    ]
    for b in BANDS:
        cols += [c for c in _band_quality(b) if c.name != f"{b}_nch"]
    for b in BANDS:
        cols += _band_phot(b)[:2] + _band_phot(b)[3:]
    cols += [
        _c("ebmv_sfd", "float", "E(B-V) from Schlegel, Finkbeiner and Davis (1998)", "mag", "phot.color.excess"),
        _c("gaia_dr3_id1", "long", "Gaia DR3 source_id of the nearest match", ucd="meta.id.cross"),
        _c("gaia_dr3_dist1", "float", "Distance to the nearest Gaia DR3 match", "arcsec", "pos.angDistance"),
    ]
    return Table(
        schema,
        "master",
        cols,
        description="SkyMapper DR4 master table: one row per astrophysical object "
        "(columns as seen in queries that ran; the full list comes from SkyMapper's TAP_SCHEMA)",
        ra_column="raj2000",
        dec_column="dej2000",
        id_column="object_id",
    )


def photometry(schema: str, release: str) -> Table:
    """Per-epoch photometry (``dr2.photometry``, ``dr4.photometry``: one row per detection of a
    master object in one image; the analogue of Pan-STARRS detections).  Columns: those of
    docs/upstreams.md §3.5 for ``dr4.photometry`` whose type a query that ran against SkyMapper's
    TAP established (object_id, image_id, ra_img, decl_img, filter, mag_psf, e_mag_psf, flags),
    with ``nimaflags`` typed as in the master table.  DR2's photometry table has the same
    layout [INF: the DR2 table browser's list could not be read here]; SkyMapper's TAP_SCHEMA
    replaces this snapshot when ``tap_url`` is configured and reachable."""
    cols = [
        _c(
            "object_id",
            "long",
            f"object_id of the {release.upper()} master object detected",
            ucd="meta.id",
            principal=True,
            indexed=True,
        ),
        _c("image_id", "long", "Identifier of the image the detection is in", ucd="meta.id;obs.image", principal=True),
        _c(
            "ra_img",
            "double",
            "ICRS right ascension of the detection in this image",
            "deg",
            "pos.eq.ra;meta.main",
            principal=True,
        ),
        _c(
            "decl_img",
            "double",
            "ICRS declination of the detection in this image",
            "deg",
            "pos.eq.dec;meta.main",
            principal=True,
            indexed=True,
        ),
        _c(
            "filter",
            "char",
            "SkyMapper filter of the image (u, v, g, r, i or z)",
            ucd="meta.id;instr.filter",
            arraysize="1",
            principal=True,
        ),
        _c("mag_psf", "float", "PSF magnitude of the detection (AB)", "mag", "phot.mag", principal=True),
        _c("e_mag_psf", "float", "Error of the PSF magnitude", "mag", "stat.error;phot.mag", principal=True),
        _c("flags", "short", "Source Extractor flags of the detection", ucd="meta.code.qual"),
        _c(
            "nimaflags",
            "int",
            "Flagged pixels from bad, saturated or crosstalk pixels of the detection",
            ucd="meta.number",
        ),
    ]
    return Table(
        schema,
        "photometry",
        cols,
        description=f"SkyMapper {release.upper()} per-epoch photometry: one row "
        "per detection of a master object in one image",
        ra_column="ra_img",
        dec_column="decl_img",
    )


BUNDLED = {
    "dr2.master": dr2_master,
    "dr4.master": dr4_master,
    "dr2.photometry": lambda schema: photometry(schema, "dr2"),
    "dr4.photometry": lambda schema: photometry(schema, "dr4"),
}
