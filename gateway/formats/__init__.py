"""Output formats: streaming writers from :class:`~gateway.rowstream.RowStream` to bytes.

Each :class:`OutputFormat` has a canonical MIME type, the aliases accepted in
``RESPONSEFORMAT``/``FORMAT`` (DALI 1.1 §3.4.3; TAP 1.1 §2.7.4 short forms), and a writer that
yields ``bytes`` chunks.  Formats are registered through the ``gateway_register_formats`` hook;
the built-in ones come from :mod:`gateway.formats.builtin`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..faults import UsageFault
from ..rowstream import RowStream


@dataclass(frozen=True)
class OutputFormat:
    """``mime``: canonical MIME type; ``aliases``: other accepted values (case-insensitive);
    ``writer(stream, infos) -> Iterator[bytes]`` where ``infos`` are ``(name, value)`` pairs to
    echo (VOTable INFOs); ``ivo_id``: TAPRegExt output-format identifier if standard."""

    mime: str
    aliases: tuple[str, ...]
    writer: Callable[[RowStream, list[tuple[str, str]]], Iterator[bytes]]
    ivo_id: str | None = None
    extension: str = "dat"
    is_votable: bool = False
    extra_mimes: tuple[str, ...] = field(default=())


class FormatRegistry:
    def __init__(self, formats: list[OutputFormat]):
        self.formats = formats
        self._by_name: dict[str, OutputFormat] = {}
        for f in formats:
            for name in (f.mime, *f.extra_mimes, *f.aliases):
                self._by_name[name.lower()] = f

    def lookup(self, value: str) -> OutputFormat | None:
        v = value.strip().lower()
        if v in self._by_name:
            return self._by_name[v]
        base = v.split(";")[0].strip()
        params = {p.split("=", 1)[0].strip(): p.split("=", 1)[1].strip() for p in v.split(";")[1:] if "=" in p}
        if base in ("application/x-votable+xml", "text/xml", "application/xml", "votable"):
            ser = params.get("serialization")
            if ser:
                return self._by_name.get(f"votable/{ser}")
            return self._by_name.get("votable")
        return self._by_name.get(base)

    def for_params(self, params) -> tuple[OutputFormat, str]:
        """:meth:`choose` for a request's ``RESPONSEFORMAT``, or its TAP synonym ``FORMAT``
        (TAP 1.1 §2.7.4); ``params`` is a :class:`gateway.dali.Params`."""
        value = params.get("RESPONSEFORMAT")
        return self.choose(value if value is not None else params.get("FORMAT"))

    def choose(self, value: str | None, default: str = "application/x-votable+xml") -> tuple[OutputFormat, str]:
        """(format, Content-Type) for a ``RESPONSEFORMAT`` value (None/empty: VOTable).  The
        client's MIME value is echoed as Content-Type (DALI 1.1 §3.4.3).  Raises UsageFault."""
        if value is None or value.strip() == "":
            value = default
        fmt = self.lookup(value)
        if fmt is None:
            raise UsageFault(
                f"unsupported RESPONSEFORMAT {value!r}; supported: " + ", ".join(f.mime for f in self.formats)
            )
        ctype = value if value.lower().startswith(("text/", "application/", "image/")) else fmt.mime
        return fmt, ctype
