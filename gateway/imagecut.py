"""SODA cutouts of FITS images (SODA 1.0 §3.3): the pixels of one image HDU that a POS, CIRCLE
or POLYGON region covers, with the image's WCS moved to the cutout (astropy ``Cutout2D``).

Shared by the archives that cut images themselves (the embedded archive's files, SDSS frames
fetched from the SAS); archives whose upstream cuts (HLA, PS1, HSC DAS) do not need it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS, FITSFixedWarning

from .sky import shape_vertices


def wcs_of(header) -> WCS:
    """The celestial WCS of an image header.  astropy's FITSFixedWarnings are silenced: on SDSS
    frames they only report the standard fixes it applies (RADECSYS read as RADESYS, MJD-OBS
    from DATE-OBS), which are right."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def region_points(shape: tuple) -> np.ndarray:
    """Sky points (N x 2, degrees) whose pixel bounding box is the region's: a circle's outline
    (64 points) and centre, a range's or polygon's vertices (:func:`gateway.dali.parse_shape`
    shapes)."""
    if shape[0] == "circle":
        ra, dec, r = shape[1:]
        ang = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        ddec = r * np.sin(ang)
        dra = r * np.cos(ang) / np.maximum(np.cos(np.radians(np.clip(dec + ddec, -89.999, 89.999))), 1e-6)
        return np.vstack([np.column_stack([ra + dra, dec + ddec]), [[ra, dec]]])
    return np.array(shape_vertices(shape), dtype=float)


def cut_hdu(data: np.ndarray, header: fits.Header, shape: tuple, history: str) -> bytes | None:
    """The FITS file (bytes, one primary HDU) of the pixels of ``data`` (ny x nx) covering
    ``shape``: the pixel bounding box of the region, clipped to the image.  The header keeps
    every card of ``header`` (units such as ``BUNIT``, calibration such as SDSS's ``NMGY``)
    except the WCS, which is the input WCS shifted to the cutout origin, and gains a HISTORY
    card ``history``.  None when the region misses the image (SODA 1.0 §3.3: no data)."""
    w = wcs_of(header)
    ny, nx = data.shape
    px = w.wcs_world2pix(region_points(shape), 0)
    if not np.all(np.isfinite(px)):
        return None
    x0, x1 = np.floor(px[:, 0].min() + 0.5), np.ceil(px[:, 0].max() + 0.5)
    y0, y1 = np.floor(px[:, 1].min() + 0.5), np.ceil(px[:, 1].max() + 0.5)
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(int(x1), nx), min(int(y1), ny)
    if x1 <= x0 or y1 <= y0:
        return None
    cut = Cutout2D(data, position=((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2), size=(y1 - y0, x1 - x0), wcs=w, mode="trim")
    out = header.copy()
    for k in list(out):
        if k.startswith(("CRPIX", "CRVAL", "CD1_", "CD2_", "CTYPE", "NAXIS", "PC1_", "PC2_", "CDELT")):
            del out[k]
    out.update(cut.wcs.to_header())
    out["HISTORY"] = history
    buf = io.BytesIO()
    fits.PrimaryHDU(data=np.asarray(cut.data), header=out).writeto(buf)
    return buf.getvalue()
