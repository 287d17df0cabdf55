"""Stopping sync work nobody waits for (issue 22): a sync TAP query keeps the database or an
upstream busy after its client has gone, or runs for longer than any sync client waits.

:class:`SyncWatch` is one daemon thread that looks at every running sync request five times a
second.  It cancels the request's :class:`~gateway.uws.executor.JobContext` (which interrupts
the DuckDB statement and shuts down its upstream connections through the request's
:class:`gateway.upstream.Scope`) when

* the client's socket has been closed (readable with nothing to read: an orderly FIN or a
  reset), or
* ``service.sync_execution_duration`` seconds have passed: the client gets a
  ``QUERY_STATUS=ERROR`` naming the limit and pointing to ``/tap/async`` (UWS 1.1 §2.2.3.4,
  executionDuration, is the async counterpart).
"""

from __future__ import annotations

import select
import socket
import threading
import time

from ..upstream import Scope


class SyncWatch:
    INTERVAL = 0.2

    def __init__(self):
        self.entries: dict[int, tuple] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.seq = 0

    def watch(self, context, sock: socket.socket | None, seconds: float | None) -> int:
        """Watch a sync request: ``context`` is cancelled when ``sock`` (the client's
        connection, if the server exposes it) closes or after ``seconds``.  The request's
        upstream calls in this thread join a :class:`Scope` stopped with it.  Returns the
        token for :meth:`release`."""
        Scope.of(context, "the request was cancelled")
        deadline = None if seconds is None else time.monotonic() + seconds
        with self.lock:
            self.seq += 1
            self.entries[self.seq] = (context, sock, deadline, seconds)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="sync-watch", daemon=True)
                self.thread.start()
            return self.seq

    def release(self, token: int) -> None:
        """The request has finished (its response ended or broke off)."""
        Scope.exit()
        with self.lock:
            self.entries.pop(token, None)

    def _run(self):
        while True:
            time.sleep(self.INTERVAL)
            with self.lock:
                entries = list(self.entries.items())
            now = time.monotonic()
            for token, (context, sock, deadline, seconds) in entries:
                if deadline is not None and now > deadline:
                    context.cancel(
                        f"the query ran longer than this service's sync limit of {seconds:g} s; "
                        "run it as an async job (/tap/async)"
                    )
                elif sock is not None and client_gone(sock):
                    context.cancel("the client closed its connection")
                else:
                    continue
                with self.lock:
                    self.entries.pop(token, None)


def client_gone(sock: socket.socket) -> bool:
    """Whether the peer has closed ``sock``: readable, yet a peek reads nothing (or fails).
    Bytes waiting (a pipelined next request) mean the client is still there."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):  # reset, or the socket is closed already
        return True
