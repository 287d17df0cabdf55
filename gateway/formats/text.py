"""CSV, TSV and JSON writers (streaming, per Arrow batch).

CSV is RFC 4180 with a header line (``text/csv;header=present``, TAP 1.1 §2.7.4); TSV is
``text/tab-separated-values`` with a header line, tabs/newlines in values replaced by spaces.
Arrays are written space-separated, as in DALI 1.1 §3.3.  JSON is
``{"metadata": [...], "data": [[...], ...], "query_status": "OK"|"OVERFLOW"|"ERROR"}`` (the
layout ESA/Gaia TAP+ users know).  JavaScript numbers hold integers exactly only up to 2**53, so
``long`` values (Gaia ``source_id``, SDSS ``objID``) are written as decimal strings and their
metadata says so with ``"json_type": "string"`` (as the proto3 JSON mapping writes int64).
An error after streaming began is appended as a last line ``# QUERY_STATUS=ERROR: ...``
(there is no in-band status in CSV; DALI 1.1 §4.4.2 allows only VOTable trailing INFOs).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..faults import Fault
from ..rowstream import RowStream
from . import cells


def _flatten(batch: pa.RecordBatch, cols) -> pa.RecordBatch:
    arrays = []
    for a, c in zip(batch.columns, cols):
        if pa.types.is_list(a.type) or pa.types.is_fixed_size_list(a.type) or pa.types.is_large_list(a.type):
            a = cells.text_cells(a, c.datatype, escape_xml=False)
        arrays.append(a)
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in cols])


def write_csv(stream: RowStream, infos, delimiter: str = ",") -> Iterator[bytes]:
    cols = stream.columns
    if delimiter == ",":
        yield (",".join(_csv_quote(c.name) for c in cols) + "\r\n").encode()
    else:
        yield ("\t".join(c.name for c in cols) + "\n").encode()
    if delimiter == "," and "csv" in stream.encoded:
        try:
            yield from stream.encoded["csv"]()
        except Fault as e:
            stream.error = str(e)
            yield f"\n# QUERY_STATUS=ERROR: {e}\n".encode()
        finally:
            stream.close()
        return
    try:
        for batch in stream:
            if not batch.num_rows:
                continue
            b = _flatten(batch, cols)
            buf = io.BytesIO()
            if delimiter == ",":
                pacsv.write_csv(b, buf, pacsv.WriteOptions(include_header=False, delimiter=",", quoting_style="needed"))
            else:
                arrays = [
                    pc.fill_null(pc.replace_substring_regex(a.cast(pa.string()), "[\t\r\n]", " "), "")
                    for a in b.columns
                ]
                rows = pc.binary_join_element_wise(*arrays, "\t")
                data, _ = cells.string_parts(pc.binary_join_element_wise(rows, "\n", ""))
                buf.write(data.tobytes())
            yield buf.getvalue()
    except Fault as e:
        stream.error = str(e)
        yield f"# QUERY_STATUS=ERROR: {e}\n".encode()


def _csv_quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"' if any(ch in s for ch in ',"\r\n') else s


def write_tsv(stream: RowStream, infos) -> Iterator[bytes]:
    return write_csv(stream, infos, delimiter="\t")


def write_json(stream: RowStream, infos) -> Iterator[bytes]:
    meta = [
        {
            k: v
            for k, v in (
                ("name", c.name),
                ("datatype", c.datatype),
                ("arraysize", c.arraysize),
                ("xtype", c.xtype),
                ("unit", c.unit),
                ("ucd", c.ucd),
                ("description", c.description),
                ("json_type", "string" if c.datatype in LONG_TYPES else None),
            )
            if v is not None
        }
        for c in stream.columns
    ]
    yield ('{"metadata": ' + json.dumps(meta) + ', "data": [').encode()
    first = True
    status = "OK"
    try:
        for batch in stream:
            if not batch.num_rows:
                continue
            lists = [_json_values(a, c.datatype in LONG_TYPES) for a, c in zip(batch.columns, stream.columns)]
            body = ",\n".join(json.dumps(list(r), allow_nan=False) for r in zip(*lists))
            yield (("" if first else ",\n") + body).encode()
            first = False
        if stream.overflow:
            status = "OVERFLOW"
    except Fault as e:
        stream.error = str(e)
        status = "ERROR"
    tail = '], "query_status": ' + json.dumps(status)
    if stream.error:
        tail += ', "error": ' + json.dumps(stream.error)
    yield (tail + "}\n").encode()


LONG_TYPES = ("long",)


def _json_values(a: pa.Array, as_string: bool = False) -> list:
    vals = a.to_pylist()
    if as_string:
        if pa.types.is_integer(a.type):
            return [None if v is None else str(v) for v in vals]
        return [None if v is None else [None if x is None else str(x) for x in v] for v in vals]
    if pa.types.is_floating(a.type):
        return [None if v is None or v != v or v in (float("inf"), float("-inf")) else v for v in vals]
    return vals
