"""Network fault doubles for the security tests: a canary listener that counts connections
(standing in for an address the gateway must never reach) and a cutting proxy that forwards
to a real upstream emulation and breaks its answers off the ways real networks do."""

from __future__ import annotations

import socket
import threading
import time

import requests


class Canary:
    """Counts TCP connections accepted on 127.0.0.1 (and ::1 on the same port when it can)."""

    def __init__(self):
        self.count = 0
        self.socks = [socket.create_server(("127.0.0.1", 0))]
        self.port = self.socks[0].getsockname()[1]
        try:
            self.socks.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        except OSError:
            pass
        for s in self.socks:
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            self.count += 1
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ncanary")
            c.close()

    def close(self):
        for s in self.socks:
            s.close()


class CuttingProxy:
    """Forwards every request to ``target`` and answers with the upstream's status and body,
    except for requests whose path contains ``match`` while ``mode`` is set:

    * ``close``: no Content-Length, the connection closed two thirds into the body (never right
      after a line end);
    * ``short``: the full Content-Length, the body cut at two thirds;
    * ``chunked``: chunked encoding without its last chunk;
    * ``trickle``: the headers, then one byte of the body every 0.1 s;
    * ``hang``: nothing at all, the connection held open until the gateway gives up (30 s at most);
    * ``5xx``: ``502 Bad Gateway`` with a text body naming the fault, the upstream not asked.
    """

    def __init__(self, target: str):
        self.target = target.rstrip("/")
        self.mode: str | None = None
        self.match = ""
        self.cuts = 0
        self.closed_at: float | None = None  # when the gateway hung up on a trickled answer
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _handle(self, c: socket.socket):
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                piece = c.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            n = int(headers.get("Content-Length", 0))
            while len(body) < n:
                body += c.recv(65536)
            early = self.mode if self.match in path and self.mode in ("hang", "5xx") else None
            if early == "hang":
                self.cuts += 1
                c.settimeout(30)
                try:
                    c.recv(1)  # returns when the gateway closes the connection
                except OSError:
                    pass
                self.closed_at = time.monotonic()
                return
            if early == "5xx":
                self.cuts += 1
                text = b"the upstream database is on fire (netfaults 5xx)"
                c.sendall(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {len(text)}\r\nConnection: close\r\n\r\n".encode()
                    + text
                )
                return
            fwd = {
                k: v
                for k, v in headers.items()
                if k.lower() not in ("host", "accept-encoding", "connection", "content-length")
            }
            r = requests.request(method, self.target + path, headers=fwd, data=body, allow_redirects=False)
            out = r.content
            status = f"HTTP/1.1 {r.status_code} {r.reason}\r\n"
            keep = "".join(
                f"{k}: {v}\r\n"
                for k, v in r.headers.items()
                if k.lower() in ("content-type", "location", "www-authenticate")
            )
            mode = self.mode if self.match in path else None
            if mode is None:
                c.sendall(f"{status}{keep}Content-Length: {len(out)}\r\nConnection: close\r\n\r\n".encode() + out)
                return
            self.cuts += 1
            cut = len(out) * 2 // 3
            while cut > 1 and out[cut - 1 : cut] in (b"\n", b">"):
                cut -= 1
            if mode == "close":
                c.sendall(f"{status}{keep}Connection: close\r\n\r\n".encode() + out[:cut])
            elif mode == "short":
                c.sendall(f"{status}{keep}Content-Length: {len(out)}\r\nConnection: close\r\n\r\n".encode() + out[:cut])
            elif mode == "chunked":
                c.sendall(
                    f"{status}{keep}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
                    + f"{cut:x}\r\n".encode()
                    + out[:cut]
                    + b"\r\n"
                )
            elif mode == "trickle":
                c.sendall(f"{status}{keep}Content-Length: {len(out)}\r\nConnection: close\r\n\r\n".encode())
                try:
                    for i in range(len(out)):
                        c.sendall(out[i : i + 1])
                        time.sleep(0.1)
                except OSError:
                    self.closed_at = time.monotonic()
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.server.close()
