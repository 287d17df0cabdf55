"""``RESPONSEFORMAT=html``: a result as a self-contained HTML page (``text/html``, the short
form DALI 1.1 §3.4.3 lists), for a browser that opens a TAP sync or SCS URL, as DaCHS does.

The page streams like the other formats: a header with the echoed INFOs (the query), one
``<table>`` whose header gives each column's name, unit and UCD, rows batch by batch, and a
trailer saying whether the result is complete (``QUERY_STATUS`` OK, OVERFLOW or ERROR).
Every name, INFO and cell is HTML-escaped: a value ``<script>`` is shown, never run.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import escape

import pyarrow as pa

from ..faults import Fault
from ..rowstream import RowStream

STYLE = (
    "body{font:14px system-ui,sans-serif;margin:1em}table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:2px 6px}th{background:#eef;position:sticky;top:0}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}.unit{font-weight:normal;color:#555}"
    ".status{padding:.4em;margin:.5em 0}.OVERFLOW{background:#ffe8b0}.ERROR{background:#fcc}"
)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if v != v else repr(v)
    if isinstance(v, list | tuple):
        return " ".join(_cell(x) for x in v)
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def write_html(stream: RowStream, infos) -> Iterator[bytes]:
    cols = stream.columns
    head = [
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Query result</title>",
        f"<style>{STYLE}</style></head><body>\n<dl>",
        *(f"<dt>{escape(str(k))}</dt><dd><code>{escape(str(v))}</code></dd>" for k, v in infos),
        "</dl>\n<table><thead><tr>",
    ]
    for c in cols:
        unit = f" <span class='unit'>[{escape(c.unit)}]</span>" if c.unit else ""
        title = " ".join(x for x in (c.ucd, c.description) if x)
        head.append(f"<th title='{escape(title)}'>{escape(c.name)}{unit}</th>")
    head.append("</tr></thead>\n<tbody>\n")
    yield "".join(head).encode()
    numeric = [c.datatype in ("short", "int", "long", "float", "double", "unsignedByte") for c in cols]
    status, rows = "OK", 0
    try:
        for batch in stream:
            if not batch.num_rows:
                continue
            lists = [
                a.to_pylist() if not pa.types.is_dictionary(a.type) else a.cast(a.type.value_type).to_pylist()
                for a in batch.columns
            ]
            out = []
            for r in zip(*lists):
                out.append(
                    "<tr>"
                    + "".join(
                        f"<td class='n'>{escape(_cell(v))}</td>" if n else f"<td>{escape(_cell(v))}</td>"
                        for v, n in zip(r, numeric)
                    )
                    + "</tr>\n"
                )
            rows += batch.num_rows
            yield "".join(out).encode()
        if stream.overflow:
            status = "OVERFLOW"
    except Fault as e:
        stream.error = str(e)
        status = "ERROR"
    note = {
        "OK": f"{rows} rows; the result is complete.",
        "OVERFLOW": f"{rows} rows: the result was truncated at MAXREC and is not complete.",
        "ERROR": f"{rows} rows, then the query failed: {stream.error}",
    }[status]
    yield (
        f"</tbody></table>\n<p class='status {status}'>QUERY_STATUS={status}: {escape(note)}</p>\n</body></html>\n"
    ).encode()
