"""RowStream: the columnar result of any query, as writers consume it.

Column metadata first (``columns``, equal to the declared TAP_SCHEMA metadata for plain column
references), then rows lazily as ``pyarrow.RecordBatch`` objects.  ``overflow`` becomes true once
the producer knows more rows existed than were delivered (DALI 1.1 §3.4.4: fetch MAXREC+1).
``error`` is set if production failed after the first batch (rendered as a trailing
``QUERY_STATUS=ERROR`` INFO, DALI 1.1 §4.4.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from .schema import Column


@dataclass
class RowStream:
    columns: list[Column]
    batches: Iterable[pa.RecordBatch]
    overflow: bool = False
    error: str | None = None
    infos: list[tuple[str, str]] = field(default_factory=list)
    on_close: Callable[[], None] | None = None
    #: (archive, column): each row has DataLink at ``/datalink/{archive}/links`` with ID = that column
    datalink: tuple[str, str] | None = None
    #: extra RESOURCEs after the results (service descriptors) and FIELD IDs they reference
    postamble: str = ""
    field_ids: dict[str, str] = field(default_factory=dict)
    #: the rows already encoded, by serialization, when the producer has them so (e.g. an
    #: upstream's own answer), so the writer passes the bytes on instead of encoding batches:
    #: ``"csv"`` RFC 4180 records without the header line; ``"binary2"`` the base64 text of a
    #: VOTable BINARY2 STREAM for exactly ``columns`` (whole 4-character groups, lines ending
    #: in newlines).  MAXREC is applied; the producer sets ``overflow`` and counts the rows
    #: in ``rows_passed``.  A writer uses one of them or ``batches``, never both.
    encoded: dict[str, Callable[[], Iterator[bytes]]] = field(default_factory=dict)
    rows_passed: int = 0
    #: ``() -> (rows, overflow)``: how many rows the stream will deliver and whether MAXREC
    #: cuts it (OVERFLOW), for writers that need the count before the first row (FITS
    #: ``NAXIS2``).  None when the producer cannot tell without reading every row; calling it
    #: costs the producer a counting query and raises the query's Fault.
    count: Callable[[], tuple[int, bool]] | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self.batches
        finally:
            self.close()

    def close(self):
        if self.on_close is not None:
            cb, self.on_close = self.on_close, None
            cb()


def limit_batches(batches: Iterable[pa.RecordBatch], maxrec: int | None, stream: RowStream) -> Iterator[pa.RecordBatch]:
    """Yield at most ``maxrec`` rows; if a further row exists set ``stream.overflow``.
    The producer must have been asked for ``maxrec + 1`` rows."""
    sent = 0
    for b in batches:
        if maxrec is not None and sent + b.num_rows > maxrec:
            keep = maxrec - sent
            if keep > 0:
                yield b.slice(0, keep)
            stream.overflow = True
            return
        sent += b.num_rows
        if b.num_rows:
            yield b
