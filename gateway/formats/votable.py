"""Streaming VOTable 1.4 writer: TABLEDATA, BINARY and BINARY2 serialisations.

Layout per DALI 1.1 §4.4: one ``RESOURCE type="results"`` with ``INFO name="QUERY_STATUS"
value="OK"`` before the TABLE; after the TABLE a trailing ``QUERY_STATUS`` INFO of
``OVERFLOW`` (more rows than MAXREC) or ``ERROR`` (failure while streaming, DALI 1.1 §4.4.2).
Rows are encoded per Arrow batch with numpy (:mod:`gateway.formats.cells`); base64 output is
emitted in 3-byte-aligned chunks so memory stays flat whatever the result size.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..faults import Fault
from ..rowstream import RowStream
from ..schema import Column
from . import cells

NS = "http://www.ivoa.net/xml/VOTable/v1.3"
HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<VOTABLE version="1.4" xmlns="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
)


def field_xml(
    c: Column,
    binary_nulls: bool = False,
    tag: str = "FIELD",
    value: str | None = None,
    id: str | None = None,
    ref: str | None = None,
) -> str:
    attrs = [f"name={quoteattr(c.name)}", f'datatype="{c.datatype}"']
    if id:
        attrs.insert(0, f"ID={quoteattr(id)}")
    if ref:
        attrs.append(f"ref={quoteattr(ref)}")
    if c.arraysize:
        attrs.append(f'arraysize="{c.arraysize}"')
    if c.xtype:
        attrs.append(f"xtype={quoteattr(c.xtype)}")
    if c.unit:
        attrs.append(f"unit={quoteattr(c.unit)}")
    if c.ucd:
        attrs.append(f"ucd={quoteattr(c.ucd)}")
    if c.utype:
        attrs.append(f"utype={quoteattr(c.utype)}")
    if value is not None:
        attrs.append(f"value={quoteattr(value)}")
    inner = ""
    if c.description:
        inner += f"<DESCRIPTION>{escape(c.description)}</DESCRIPTION>"
    if binary_nulls and c.datatype in cells.NULL_INT and not c.arraysize:
        inner += f'<VALUES null="{cells.NULL_INT[c.datatype]}"/>'
    if inner:
        return f"<{tag} {' '.join(attrs)}>{inner}</{tag}>\n"
    return f"<{tag} {' '.join(attrs)}/>\n"


def info_xml(name: str, value: str, text: str | None = None) -> str:
    if text is None:
        return f"<INFO name={quoteattr(name)} value={quoteattr(value)}/>\n"
    return f"<INFO name={quoteattr(name)} value={quoteattr(value)}>{escape(text)}</INFO>\n"


def error_document(message: str, infos: list[tuple[str, str]] | tuple = ()) -> bytes:
    """DALI 1.1 §4.2 error VOTable: ``QUERY_STATUS=ERROR`` with the message as INFO content."""
    body = HEADER + '<RESOURCE type="results">\n' + info_xml("QUERY_STATUS", "ERROR", message)
    for k, v in infos:
        body += info_xml(k, v)
    return (body + "</RESOURCE>\n</VOTABLE>\n").encode()


class Base64Lines:
    """base64 of a byte stream in 76-character lines (what ``base64.encodebytes`` writes),
    encoded by one C call per chunk and broken into lines with numpy."""

    def __init__(self):
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self.pending + data
        cut = len(data) - len(data) % 57
        self.pending = data[cut:]
        if not cut:
            return b""
        enc = np.frombuffer(binascii.b2a_base64(data[:cut], newline=False), np.uint8).reshape(-1, 76)
        out = np.empty((enc.shape[0], 77), np.uint8)
        out[:, :76] = enc
        out[:, 76] = 10
        return out.tobytes()

    def flush(self) -> bytes:
        out = base64.encodebytes(self.pending) if self.pending else b""
        self.pending = b""
        return out


def write_votable(
    stream: RowStream,
    infos: list[tuple[str, str]],
    serialization: str = "binary2",
    preamble: str = "",
    postamble: str = "",
    field_ids: dict[str, str] | None = None,
) -> Iterator[bytes]:
    """Yield a complete VOTable for ``stream``.  ``serialization``: ``tabledata``, ``binary``
    or ``binary2``.  ``preamble``: extra XML inside the results RESOURCE before the TABLE
    (e.g. PARAMs); ``postamble``: sibling RESOURCEs after it (e.g. service descriptors)."""
    cols = stream.columns
    postamble += stream.postamble
    field_ids = {**(field_ids or {}), **stream.field_ids}
    head = [HEADER, '<RESOURCE type="results">\n', info_xml("QUERY_STATUS", "OK")]
    head += [info_xml(k, v) for k, v in infos]
    head.append(preamble)
    head.append("<TABLE>\n")
    head += [field_xml(c, binary_nulls=(serialization == "binary"), id=(field_ids or {}).get(c.name)) for c in cols]
    tag = {"tabledata": "TABLEDATA", "binary": "BINARY", "binary2": "BINARY2"}[serialization]
    head.append(f"<DATA><{tag}>" + ("\n" if tag == "TABLEDATA" else '<STREAM encoding="base64">\n'))
    yield "".join(head).encode()
    b64 = Base64Lines()
    error = None
    try:
        if serialization in stream.encoded:
            try:
                yield from stream.encoded[serialization]()
            finally:
                stream.close()
        for batch in stream if serialization not in stream.encoded else ():
            if batch.num_rows == 0:
                continue
            if serialization == "tabledata":
                yield tabledata_rows(batch, cols)
            else:
                parts = [cells.null_flags(batch.columns, batch.num_rows)] if serialization == "binary2" else []
                parts += [
                    cells.binary_cell(a, c.datatype, c.arraysize, serialization == "binary2")
                    for a, c in zip(batch.columns, cols)
                ]
                data, _ = cells.interleave(parts)
                out = b64.feed(data.tobytes())
                if out:
                    yield out
    except Fault as e:
        error = str(e)
    except Exception as e:  # noqa: BLE001 - reported in-band; the HTTP status is already sent
        error = f"internal error while streaming: {type(e).__name__}"
        import logging

        logging.getLogger("gateway").exception("error while streaming a VOTable")
    tail = "" if tag == "TABLEDATA" else b64.flush().decode() + "</STREAM>"
    tail += f"</{tag}></DATA>\n</TABLE>\n"
    if error is not None:
        stream.error = error
        tail += info_xml("QUERY_STATUS", "ERROR", error)
    elif stream.overflow:
        tail += info_xml("QUERY_STATUS", "OVERFLOW")
    tail += "</RESOURCE>\n" + postamble + "</VOTABLE>\n"
    yield tail.encode()


def tabledata_rows(batch: pa.RecordBatch, cols: list[Column]) -> bytes:
    """``<TR><TD>..</TD>..</TR>`` lines of a batch (VOTable 1.4 §6), built by one Arrow
    element-wise join over the columns' text cells (null -> empty cell)."""
    args: list = ["<TR><TD>"]
    for a, c in zip(batch.columns, cols):
        txt = cells.text_cells(a, c.datatype, escape_xml=True)
        args += [pc.fill_null(txt, "") if txt.null_count else txt, "</TD><TD>"]
    args[-1] = "</TD></TR>\n"
    rows = pc.binary_join_element_wise(*args, "")
    data, _ = cells.string_parts(rows)
    return data.tobytes()
