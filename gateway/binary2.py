"""An upstream's VOTable BINARY2 answer passed on without decoding its rows into cells.

VOTable 1.4 §5.5 (BINARY2): each row is ``ceil(ncols / 8)`` bytes of null flags followed by
the cells in FIELD order; a fixed-size cell of ``datatype`` and ``arraysize`` takes
``width(datatype) * prod(arraysize)`` bytes.  When every FIELD of the upstream's answer has
the datatype and arraysize of the gateway's declared column, its decoded STREAM is already the
BINARY2 the gateway would write, so its base64 text is copied through, counted to cut it at
MAXREC.  The upstream's trailing
``QUERY_STATUS`` INFO (DALI 1.1 §4.4) becomes the stream's OVERFLOW or in-band ERROR.
"""

from __future__ import annotations

import binascii
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np

from gateway.faults import FatalFault, UsageFault
from gateway.schema import Column

WIDTH = {
    "boolean": 1,
    "bit": 1,
    "unsignedByte": 1,
    "char": 1,
    "short": 2,
    "unicodeChar": 2,
    "int": 4,
    "float": 4,
    "long": 8,
    "double": 8,
    "floatComplex": 8,
    "doubleComplex": 16,
}
_WS = b" \t\r\n"


def row_width(columns: list[Column | None]) -> int | None:
    """Bytes per BINARY2 row when every column is declared and fixed-size (``bit`` arrays and
    variable ``*`` arraysizes excluded); None otherwise."""
    total = math.ceil(len(columns) / 8)
    for c in columns:
        if c is None or c.datatype not in WIDTH or c.datatype == "bit" and c.arraysize:
            return None
        n = 1
        for dim in (c.arraysize or "1").split("x"):
            if not dim.isdigit():
                return None
            n *= int(dim)
        total += WIDTH[c.datatype] * n
    return total


def _before_last_chars(data: bytes, k: int) -> int:
    """Index in ``data`` where its last ``k`` non-whitespace characters begin (``len(data)``
    for k = 0); 0 if it has fewer."""
    i = len(data)
    while k and i:
        i -= 1
        if data[i] > 32:
            k -= 1
    return i


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


class Binary2Answer:
    """Reads an upstream VOTable answer from ``chunks`` (an iterator of bytes) as far as the
    start of its BINARY2 STREAM.  ``fields`` are the (datatype, arraysize) of its FIELDs;
    ``ok`` says whether the answer is BINARY2 with exactly the declared ``columns``' layout.
    If not, ``whole()`` gives the complete body for an ordinary VOTable parser."""

    def __init__(self, chunks: Iterator[bytes], columns: list[Column], what: str, max_head: int = 1 << 24):
        self.chunks, self.what = chunks, what
        self.parser: ET.XMLPullParser = ET.XMLPullParser(events=("start", "end"))
        self.head = b""
        self.fields: list[tuple[str, str | None]] = []
        self.binary2 = False
        self.rest = b""
        while True:
            start = self.head.find(b"<STREAM")
            close = self.head.find(b">", start) if start >= 0 else -1
            if close >= 0 or len(self.head) > max_head:
                break
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.head += chunk
        if close >= 0:
            self.rest = self.head[close + 1 :]
            self._feed(self.head[: close + 1])
        want = [(c.datatype, c.arraysize or None) for c in columns]
        self.ok = self.binary2 and self.fields == want
        self.width = row_width(list(columns)) if self.ok else None

    def _feed(self, data: bytes) -> list[tuple[str, Any]]:
        try:
            self.parser.feed(data)
            events: list[Any] = list(self.parser.read_events())
        except ET.ParseError as e:
            raise FatalFault(f"{self.what} sent an unreadable VOTable ({e})")
        for ev, el in events:
            tag = _local(el.tag)
            if ev == "start" and tag == "FIELD":
                size = el.get("arraysize")
                self.fields.append((el.get("datatype"), None if size in (None, "1") else size))
            elif ev == "start" and tag == "BINARY2":
                self.binary2 = True
        return events

    def whole(self) -> bytes:
        """The complete answer, for a parser of any serialization."""
        return self.head + b"".join(self.chunks)

    def rows(
        self, maxrec: int | None, on_overflow: Callable[[], None], count: Callable[[int], None]
    ) -> Iterator[bytes]:
        """The base64 text of the rows, at most ``maxrec`` of them (``on_overflow()`` when the
        upstream had more or said OVERFLOW); ``count(n)`` with the rows passed, at the end.
        The upstream's text is passed on as it came (its characters counted with numpy, up to
        3 of them held back so each piece is whole 4-character groups); only the group where
        MAXREC falls is decoded and re-encoded.  The upstream's QUERY_STATUS=ERROR after its
        table raises UsageFault with its text."""
        assert self.ok and self.width is not None
        width: int = self.width
        carry, sent = b"", 0
        tail: bytes | None = None
        limit = None if maxrec is None else maxrec * width
        data: bytes = self.rest
        try:
            while True:
                lt = data.find(b"<")
                if lt >= 0:
                    tail, data = data[lt:], data[:lt]
                chars = int(np.count_nonzero(np.frombuffer(data, np.uint8) > 32))
                total = len(carry) + chars
                keep = total % 4 if tail is None else 0
                if keep <= chars:
                    cut = _before_last_chars(data, keep)
                    out, carry = carry + data[:cut], data[cut:].translate(None, _WS)
                else:  # a piece shorter than the characters held back
                    joined = (carry + data).translate(None, _WS)
                    out, carry = joined[: total - keep], joined[total - keep :]
                nbytes = (total - keep) // 4 * 3
                if tail is not None and nbytes:
                    last = out[_before_last_chars(out, 2) :]
                    nbytes -= last.count(b"=")
                if limit is not None and sent + nbytes > limit:
                    text = out.translate(None, _WS)
                    full, part = divmod(limit - sent, 3)
                    piece = text[: full * 4]
                    if part:
                        try:
                            group = binascii.a2b_base64(text[full * 4 : full * 4 + 4])[:part]
                        except binascii.Error as e:
                            raise FatalFault(f"{self.what} sent a BINARY2 stream that is not base64 ({e})")
                        piece += binascii.b2a_base64(group, newline=False)
                    sent = limit
                    on_overflow()
                    yield piece + b"\n"
                    return  # the rest is not read: the upstream had more rows than MAXREC
                sent += nbytes
                if out:
                    yield out
                if tail is not None:
                    break
                more = next(self.chunks, None)
                if more is None:
                    raise FatalFault(f"{self.what} broke off its BINARY2 answer")
                data = more
            if total % 4:
                raise FatalFault(f"{self.what} sent a BINARY2 stream of incomplete base64")
            if sent % width:
                raise FatalFault(f"{self.what} sent a BINARY2 stream that is not whole rows of its FIELDs")
            if out and not out.endswith(b"\n"):
                yield b"\n"
            self._trailer(tail, on_overflow)
        finally:
            count(sent // width)

    def _trailer(self, tail: bytes | None, on_overflow) -> None:
        status = []
        data: bytes | None = tail
        while data is not None:
            status += [
                el
                for ev, el in self._feed(data)
                if ev == "end" and _local(el.tag) == "INFO" and el.get("name") == "QUERY_STATUS"
            ]
            data = next(self.chunks, None)
        for el in status:
            if el.get("value") == "OVERFLOW":
                on_overflow()
            elif el.get("value") == "ERROR":
                raise UsageFault(f"{self.what} said: {(el.text or '').strip()}")


# -- fixed-width BINARY / BINARY2 tables decoded with numpy (uploads) ------------------------
_DTYPES = {
    "unsignedByte": "u1",
    "short": ">i2",
    "int": ">i4",
    "long": ">i8",
    "float": ">f4",
    "double": ">f8",
}


class BinaryField:
    """The FIELD attributes of a table read by :func:`read_fixed_binary` (the names of
    astropy's ``Field``: ``name``, ``ID``, ``datatype``, ``arraysize``, ``xtype``, ``unit``,
    ``ucd``, ``description``)."""

    def __init__(self, el: ET.Element):
        self.name = el.get("name") or el.get("ID") or ""
        self.ID = el.get("ID") or self.name
        self.datatype = el.get("datatype") or ""
        size = el.get("arraysize")
        self.arraysize = None if size in (None, "1") else size
        self.xtype = el.get("xtype")
        self.unit = el.get("unit")
        self.ucd = el.get("ucd")
        self.description: str | None = None
        self.null: str | None = None


def read_fixed_binary(data: bytes) -> tuple[list[BinaryField], list[Any]] | None:
    """The first TABLE of a VOTable document whose rows are an inline base64 BINARY or BINARY2
    STREAM of fixed-width scalar cells (numbers, ``char``/``unicodeChar`` of a fixed
    ``arraysize``), decoded with numpy in one pass: its FIELDs and one masked array per
    FIELD.  Null cells are masked as astropy's parser masks them: BINARY2's null flags
    (VOTable 1.4 §5.5), integers equal to ``VALUES null``, floating-point NaN.  None for any
    other document (other serializations, arrays, variable sizes, ``boolean`` and ``bit``,
    complex numbers, a STREAM by reference, a malformed document): the caller then parses it
    with astropy, which gives its own errors."""
    start = data.find(b"<STREAM")
    close = data.find(b">", start) if start >= 0 else -1
    end = data.find(b"</STREAM", close) if close >= 0 else -1
    if end < 0:
        return None
    parser: ET.XMLPullParser = ET.XMLPullParser(events=("start", "end"))
    fields: list[BinaryField] = []
    tables, kind, stream = 0, None, None
    try:
        parser.feed(data[: close + 1])
        events: list[Any] = list(parser.read_events())
        for ev, el in events:
            tag = _local(el.tag)
            if ev == "start" and tag == "TABLE":
                tables += 1
            elif ev == "end" and tag == "FIELD" and tables == 1:
                f = BinaryField(el)
                for child in el:
                    if _local(child.tag) == "DESCRIPTION":
                        f.description = (child.text or "").strip() or None
                    elif _local(child.tag) == "VALUES":
                        f.null = child.get("null")
                fields.append(f)
            elif ev == "start" and tag in ("BINARY", "BINARY2"):
                kind = tag
            elif ev == "start" and tag == "STREAM":
                stream = cast(ET.Element, el)
        parser.feed(data[end:])
        parser.close()
    except ET.ParseError:
        return None
    if tables != 1 or kind is None or stream is None or not fields:
        return None
    if stream.get("href") or (stream.get("encoding") or "base64") != "base64":
        return None
    layout: list[Any] = []
    if kind == "BINARY2":
        layout.append(("_nulls", "u1", (math.ceil(len(fields) / 8),)))
    for i, f in enumerate(fields):
        size = f.arraysize
        if f.datatype in _DTYPES and size is None:
            layout.append((f"f{i}", _DTYPES[f.datatype]))
        elif f.datatype in ("char", "unicodeChar") and (size is None or size.isdigit()):
            n = int(size or 1)
            layout.append((f"f{i}", f"S{n}") if f.datatype == "char" else (f"f{i}", ">u2", (n,)))
        else:
            return None
    dtype = np.dtype(layout)  # type: ignore[call-overload]
    try:
        raw = binascii.a2b_base64(data[close + 1 : end])
    except binascii.Error:
        return None
    if len(raw) % dtype.itemsize:
        return None
    rows = np.frombuffer(raw, dtype)
    flags = (
        np.unpackbits(rows["_nulls"], axis=1)[:, : len(fields)].astype(bool)
        if kind == "BINARY2"
        else np.zeros((len(rows), len(fields)), bool)
    )
    out = []
    for i, f in enumerate(fields):
        v = rows[f"f{i}"]
        mask = flags[:, i].copy()
        if f.datatype in ("float", "double"):
            v = v.astype(v.dtype.newbyteorder("="))
            mask |= np.isnan(v)
        elif f.datatype in _DTYPES:
            v = v.astype(v.dtype.newbyteorder("="))
            if f.null is not None:
                try:
                    mask |= v == int(f.null)
                except ValueError:
                    return None
        elif f.datatype == "unicodeChar":
            v = np.array([r.tobytes().decode("utf-16-be").rstrip("\0") for r in v], dtype=object)
        out.append(np.ma.MaskedArray(v, mask=mask))
    return fields, out
