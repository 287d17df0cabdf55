"""Result cache for identical upstream queries (diskcache: SQLite index plus files, safe for
the threads and processes of one host, least-recently-used eviction within ``max_bytes``).

An entry is keyed by SHA-256 of: the archive, the archive's own text of its native request
(:meth:`gateway.archive.Archive.result_key`), MAXREC, TOP, the output format, and the
caller's owner key (:func:`gateway.auth.owner_key`, a PBKDF2 hash of the credentials; empty
for anonymous callers).  So a result is reused only for the same caller asking the same
thing; credentials themselves never reach the cache.  A result is stored once it has been
streamed to its end without error, as Arrow IPC (batches) or as the bytes a writer passed on
(:attr:`gateway.rowstream.RowStream.encoded`); one larger than ``max_entry_bytes`` is
streamed but not kept.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from .config import CacheConfig
from .ops import record_cache
from .rowstream import RowStream

log = logging.getLogger("gateway.cache")


class ResultCache:
    def __init__(self, config: CacheConfig, base_dir: Path):
        import diskcache

        self.config = config
        path = (Path(base_dir) / config.dir).resolve()
        self.store = diskcache.Cache(str(path), size_limit=config.max_bytes, eviction_policy="least-recently-used")

    @staticmethod
    def key(
        archive: str, request: str, maxrec: int | None, top: int | None, response_format: str | None, actor: dict | None
    ) -> str:
        owner = (actor or {}).get("key") or ""
        parts = [archive, request, repr(maxrec), repr(top), response_format or "", owner]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()

    def get(self, key: str) -> RowStream | None:
        """The stream of a stored result, or None."""
        entry = self.store.get(key)
        record_cache(entry is not None)
        if entry is None:
            return None
        stream = RowStream(
            entry["columns"],
            [],
            overflow=entry["overflow"],
            infos=list(entry["infos"]),
            datalink=entry["datalink"],
            postamble=entry["postamble"],
            field_ids=dict(entry["field_ids"]),
            rows_passed=entry["rows"],
        )
        if "ipc" in entry:
            stream.batches = iter(pa.ipc.open_stream(entry["ipc"]))
        else:
            fmt, data = entry["encoded"]
            stream.encoded[fmt] = lambda: iter([data])
        log.info("result cache hit %s", key[:12])
        return stream

    def tee(self, key: str, stream: RowStream) -> RowStream:
        """``stream``, keeping what it yields and storing it under ``key`` once it is complete."""
        budget = self.config.max_entry_bytes
        batches = stream.batches
        meta = {
            "infos": list(stream.infos),
            "datalink": stream.datalink,
            "postamble": stream.postamble,
            "field_ids": dict(stream.field_ids),
        }  # as the archive made them, before the service adds

        def kept_batches() -> Iterator[pa.RecordBatch]:
            kept: list[pa.RecordBatch] | None = []
            size = 0
            for b in batches:
                if kept is not None:
                    size += b.nbytes
                    if size <= budget:
                        kept.append(b)
                    else:
                        kept = None
                yield b
            if kept is not None and stream.error is None:
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, kept[0].schema if kept else pa.schema([])) as w:
                    for b in kept:
                        w.write_batch(b)
                self._put(key, stream, meta, ipc=sink.getvalue().to_pybytes(), rows=sum(b.num_rows for b in kept))

        stream.batches = kept_batches()
        for fmt, produce in list(stream.encoded.items()):

            def kept_bytes(produce=produce, fmt=fmt) -> Iterator[bytes]:
                kept: list[bytes] | None = []
                size = 0
                for chunk in produce():
                    if kept is not None:
                        size += len(chunk)
                        if size <= budget:
                            kept.append(chunk)
                        else:
                            kept = None
                    yield chunk
                if kept is not None:
                    self._put(key, stream, meta, encoded=(fmt, b"".join(kept)), rows=stream.rows_passed)

            stream.encoded[fmt] = kept_bytes
        return stream

    def _put(self, key: str, stream: RowStream, meta: dict, rows: int, **data) -> None:
        entry = {"columns": stream.columns, "overflow": stream.overflow, "rows": rows, **meta, **data}
        try:
            self.store.set(key, entry, expire=self.config.ttl)
        except Exception:  # noqa: BLE001 - a full or broken cache must not break the answer
            log.exception("result cache: could not store %s", key[:12])

    def close(self) -> None:
        self.store.close()
