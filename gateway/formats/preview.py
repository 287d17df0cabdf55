"""PNG previews of FITS images: ``RESPONSEFORMAT=image/png`` on SODA (DALI 1.1 §3.4.3
``RESPONSEFORMAT``; the ``#preview`` look of DataLink 1.1 §3.2.6), as the customer's MAST
notebook shows HLA cutouts.

The first HDU with a 2-D (or higher: the first plane) image is scaled with an asinh stretch
(Lupton et al. 1999) between its median (the sky) and 99.95th percentile (astropy.visualization), flipped so
north is up for a standard WCS (FITS pixel (1, 1) is the lower left), and written by Pillow.
NaN pixels are black.  Images larger than ``max_size`` on a side are shrunk to it.
"""

from __future__ import annotations

import io

import numpy as np

from ..faults import UsageFault

PNG = "image/png"
#: black at the median (the sky), white at the 99.95th percentile; asinh softening
LOW, HIGH, ASINH_A = 50.0, 99.95, 0.1


def fits_to_png(fits_bytes: bytes, max_size: int = 1024) -> bytes:
    """``fits_bytes`` (a whole FITS file) → PNG bytes (8-bit grey).  Raises UsageFault when
    the file holds no image."""
    from astropy.io import fits
    from astropy.visualization import AsinhStretch, AsymmetricPercentileInterval
    from PIL import Image

    with fits.open(io.BytesIO(fits_bytes), memmap=False) as hdus:
        data = next((h.data for h in hdus if h.is_image and h.data is not None and h.data.ndim >= 2), None)
        if data is None:
            raise UsageFault("the cutout holds no image to preview as PNG")
        img = np.asarray(data, dtype=np.float64)
    while img.ndim > 2:
        img = img[0]
    finite = np.isfinite(img)
    if finite.any():
        vmin, vmax = AsymmetricPercentileInterval(LOW, HIGH).get_limits(img[finite])
        linear = np.clip((np.where(finite, img, vmin) - vmin) / ((vmax - vmin) or 1.0), 0.0, 1.0)
        scaled = AsinhStretch(ASINH_A)(linear)
    else:
        scaled = np.zeros_like(img)
    grey = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)[::-1]
    picture = Image.fromarray(grey)  # uint8 2-D: 8-bit grey ("L")
    if max(picture.size) > max_size:
        picture.thumbnail((max_size, max_size))
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=False)
    return out.getvalue()
