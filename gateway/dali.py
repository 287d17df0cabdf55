"""DALI 1.1 §3 request parameters: names case-insensitive (query string, urlencoded and
multipart bodies), values case-sensitive; single-valued parameters given twice are an error."""

from __future__ import annotations

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
    each parsed by :func:`gateway.obscore.parse_shape` (SODA 1.0 §3.3).  Names are
    case-insensitive (DALI 1.1 §3.1); a sync service that takes one region refuses more with
    ``MultiValuedParamNotSupported`` (``gateway/protocols/soda.py``).  Raises UsageFault for a
    value that is not a shape."""
    from .obscore import parse_shape

    shapes = []
    for k, v in pairs:
        name = k.upper()
        if name == "POS":
            shapes.append(parse_shape(v, "POS"))
        elif name in ("CIRCLE", "POLYGON"):
            shapes.append(parse_shape(f"{name} {v}", name))
    return shapes
