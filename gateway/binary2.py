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
from typing import Any

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
