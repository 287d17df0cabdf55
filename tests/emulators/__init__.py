"""Loopback emulations of upstream archives, built from docs/upstreams.md and
the real recorded responses copied to tests/fixtures/ (with provenance)."""

import numpy as np

NP = {
    "short": np.int16,
    "int": np.int32,
    "long": np.int64,
    "float": np.float32,
    "double": np.float64,
    "unsignedByte": np.uint8,
}


def column_values(c, n: int, rng, mags=(15.0, 26.0), text="{name}-{i}"):
    """Reproducible synthetic values of a column in its declared type: magnitudes uniform in
    ``mags``, other numbers 0-99 (integers) or 0-1, text from ``text``."""
    if c.datatype == "char":
        return np.array([text.format(name=c.name, i=i) for i in range(n)])
    if c.unit == "mag":
        return rng.uniform(*mags, n).astype(NP[c.datatype])
    if c.datatype in ("short", "int", "long", "unsignedByte"):
        return rng.integers(0, 100, n).astype(NP[c.datatype])
    return rng.uniform(0, 1, n).astype(NP[c.datatype])


def discs(rng, centres, n: int, radius: float):
    """(ra, dec) arrays of ``n`` positions uniform in a disc of ``radius`` deg around each centre."""
    ras, decs = [], []
    for ra0, dec0 in centres:
        r = np.sqrt(rng.uniform(0, 1, n)) * radius
        th = rng.uniform(0, 2 * np.pi, n)
        decs.append(dec0 + r * np.sin(th))
        ras.append((ra0 + r * np.cos(th) / np.cos(np.radians(dec0))) % 360)
    return np.concatenate(ras), np.concatenate(decs)
