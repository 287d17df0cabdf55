"""DALI 1.1 §3 request parameters: names case-insensitive (query string, urlencoded and
multipart bodies), values case-sensitive; single-valued parameters given twice are an error.
Also the one parser of DALI numbers (§3.3.2) and of the SIA 2.0/SODA shapes POS, CIRCLE and
POLYGON (:func:`parse_shape`, :func:`soda_regions`)."""

from __future__ import annotations

import math

from flask import request

from .faults import UsageFault


class Params:
    def __init__(self, pairs: list[tuple[str, str]]):
        self._values: dict[str, list[str]] = {}
        for k, v in pairs:
            self._values.setdefault(k.upper(), []).append(v)

    @classmethod
    def from_request(cls) -> Params:
        return cls(cls.pairs_from_request())

    @staticmethod
    def pairs_from_request() -> list[tuple[str, str]]:
        """(name, value) pairs of the query string and a POSTed form, names as sent."""
        pairs = list(request.args.items(multi=True))
        if request.method == "POST":
            pairs += list(request.form.items(multi=True))
        return pairs

    def get(self, name: str, default: str | None = None) -> str | None:
        vals = self._values.get(name.upper())
        if not vals:
            return default
        if len(vals) > 1:
            raise UsageFault(f"parameter {name.upper()} is single-valued but was given {len(vals)} times")
        return vals[0]

    def as_dict(self) -> dict[str, str | list[str]]:
        """NAME -> value (a list where the parameter was given more than once), for hooks and logs."""
        return {k: v[0] if len(v) == 1 else list(v) for k, v in self._values.items()}

    def getlist(self, name: str) -> list[str]:
        return list(self._values.get(name.upper(), []))

    def __contains__(self, name: str) -> bool:
        return name.upper() in self._values

    def get_int(self, name: str, default: int | None = None, minimum: int | None = 0) -> int | None:
        v = self.get(name)
        if v is None or v.strip() == "":
            return default
        try:
            i = int(v)
        except ValueError:
            raise UsageFault(f"{name.upper()} must be an integer, got {v!r}")
        if minimum is not None and i < minimum:
            raise UsageFault(f"{name.upper()} must be >= {minimum}, got {i}")
        if abs(i) > 2**63 - 1:  # beyond any database's integer (an SQL LIMIT would overflow)
            raise UsageFault(f"{name.upper()} must be at most {2**63 - 1}, got {v.strip()[:40]}")
        return i

    def get_float(self, name: str, required: bool = False) -> float | None:
        v = self.get(name)
        if v is None or v.strip() == "":
            if required:
                raise UsageFault(f"parameter {name.upper()} is required")
            return None
        try:
            return float(v)
        except ValueError:
            raise UsageFault(f"{name.upper()} must be a number, got {v!r}")


def soda_regions(pairs: list[tuple[str, str]]) -> list[tuple]:
    """Every region of a SODA request, in the order given: ``POS`` (``CIRCLE``/``RANGE``/
    ``POLYGON`` with its keyword), ``CIRCLE`` (ra dec r) and ``POLYGON`` (ra dec ...) values,
    each parsed by :func:`parse_shape` (SODA 1.0 §3.3).  Names are
    case-insensitive (DALI 1.1 §3.1); a sync service that takes one region refuses more with
    ``MultiValuedParamNotSupported`` (``gateway/protocols/soda.py``).  Raises UsageFault for a
    value that is not a shape."""

    shapes = []
    for k, v in pairs:
        name = k.upper()
        if name == "POS":
            shapes.append(parse_shape(v, "POS"))
        elif name in ("CIRCLE", "POLYGON"):
            shapes.append(parse_shape(f"{name} {v}", name))
    return shapes


# -- SIA 2.0 / SODA shapes ----------------------------------------------------------------
def dali_number(v: str, what: str) -> float:
    """A DALI number: a float or +Inf/-Inf (DALI 1.1 §3.3.2); UsageFault naming ``what`` otherwise."""
    v = v.strip()
    low = v.lower()
    if low in ("+inf", "inf"):
        return math.inf
    if low == "-inf":
        return -math.inf
    try:
        return float(v)
    except ValueError:
        raise UsageFault(f"{what}: {v!r} is not a number")


def parse_shape(value: str, name: str = "POS") -> tuple:
    """DALI/SIA2/SODA shape: ``CIRCLE ra dec r`` | ``RANGE ra1 ra2 dec1 dec2`` |
    ``POLYGON ra1 dec1 ...`` (SIA 2.0 §2.1.1; SODA 1.0 §3.3.1)."""
    parts = value.split()
    if not parts:
        raise UsageFault(f"{name} is empty")
    kind = parts[0].upper()
    nums = [dali_number(x, name) for x in parts[1:]]
    if any(math.isnan(n) for n in nums):
        raise UsageFault(f"{name}: NaN is not a coordinate ({value!r})")
    if kind == "CIRCLE":
        if len(nums) != 3:
            raise UsageFault(f"{name}: CIRCLE needs ra dec radius, got {value!r}")
        ra, dec, r = nums
        if not (0 <= ra <= 360 and -90 <= dec <= 90 and 0 < r <= 180):
            raise UsageFault(f"{name}: CIRCLE out of range ({value!r}); ra in [0,360], dec in [-90,90], r in (0,180]")
        return ("circle", ra, dec, r)
    if kind == "RANGE":
        if len(nums) != 4:
            raise UsageFault(f"{name}: RANGE needs ra1 ra2 dec1 dec2, got {value!r}")
        if nums[0] > nums[1] or nums[2] > nums[3]:
            raise UsageFault(f"{name}: RANGE bounds must be ordered low to high ({value!r})")
        return ("range", *nums)
    if kind == "POLYGON":
        if len(nums) < 6 or len(nums) % 2:
            raise UsageFault(f"{name}: POLYGON needs at least three ra dec pairs, got {value!r}")
        if any(math.isinf(n) for n in nums):
            raise UsageFault(f"{name}: POLYGON vertices must be finite")
        if any(not -90 <= d <= 90 for d in nums[1::2]):
            raise UsageFault(f"{name}: POLYGON declinations must lie in [-90, 90] ({value!r})")
        return ("polygon", *nums)
    raise UsageFault(f"{name}: unknown shape {parts[0]!r}; use CIRCLE, RANGE or POLYGON")
