"""The gateway's one HTTP client for everything it fetches: upstream archives (every plugin),
SODA/DataLink proxying and TAP_UPLOAD URLs.

Three guarantees, each enforced in one place:

* **The address checked is the address connected to.**  :func:`check_url` refuses what two URL
  parsers read differently (a backslash, userinfo, percent-encoded or non-ASCII hosts,
  whitespace): ``http://169.254.169.254\\@8.8.8.8/`` is ``8.8.8.8`` to :func:`urllib.parse.urlsplit`
  and ``169.254.169.254`` to urllib3.  Then the connection itself (:class:`GuardedAdapter`)
  resolves the host once, checks every resolved IP against its :class:`AddressPolicy` and
  connects to that IP, so no later lookup (DNS rebinding), redirect or alternative spelling of
  an address (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``[::ffff:127.0.0.1]``,
  ``0.0.0.0``, ``[::]``) reaches an address the policy forbids.
* **Every call has a total deadline** besides the per-read timeout: an upstream trickling one
  byte a second never times out a read, so a watchdog shuts the socket down when the call's
  deadline passes, and the call is reported as having exceeded it (:class:`Call`).
* **A body that did not end cleanly is never taken for a whole one** (:func:`iter_body`,
  :func:`read_body`, :func:`check_complete`): a length short of ``Content-Length``, a chunked
  body without its last chunk, a deadline cut, or a VOTable/CSV that stops before its end
  raise :class:`~gateway.faults.TransientFault` naming the upstream.

TLS is verified against the host name (SNI and certificate), not the pinned IP.  Requests
sent through a configured HTTP proxy connect to the proxy, which then does its own lookup:
only the URL check applies to them.
"""

from __future__ import annotations

import heapq
import io
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import parse_url

from .faults import TransientFault, UsageFault
from .ops import record_upstream


class AddressRefused(UsageFault):
    """A URL or the address it leads to is not one this client may contact (HTTP 400 when it
    came from the user; plugins turn an upstream's redirect into a TransientFault)."""


@dataclass(frozen=True)
class AddressPolicy:
    """Where a session may connect.  ``origins``: the only ``scheme://host:port`` allowed
    (an archive's configured upstreams; any IP they resolve to is the operator's choice), or
    None for any host whose every address is public.  ``allow_private``: with ``origins``
    None, loopback, private, link-local, reserved and unspecified addresses too."""

    origins: frozenset[str] | None = None
    allow_private: bool = False

    def check_ip(self, host: str, ip: str) -> None:
        if self.origins is not None or self.allow_private:
            return
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if not addr.is_global or addr.is_multicast:
            raise AddressRefused(f"{host} is a non-public address ({addr}); refused")

    def check_origin(self, scheme: str, host: str, port: int) -> None:
        if self.origins is None:
            return
        o = f"{scheme}://{host.lower().strip('[]')}:{port}"
        if o not in self.origins:
            raise AddressRefused(f"{o} is not a configured upstream of this archive; refused")


_BAD = re.compile(r"[\\\s\x00-\x1f\x7f-\uffff]")


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL (default ports filled in), as :class:`AddressPolicy` compares."""
    p = parse_url(url)
    scheme = (p.scheme or "").lower()
    return f"{scheme}://{(p.host or '').lower().strip('[]')}:{p.port or (443 if scheme == 'https' else 80)}"


def check_url(url: str, what: str = "URL") -> str:
    """Refuse a URL that is not plain ``http(s)://host[:port]/...`` or that two parsers read
    differently (the SSRF differential): backslashes, whitespace or control characters,
    non-ASCII text, userinfo (``user@``), a percent-encoded host, another scheme.  Returns the
    URL unchanged.  Raises :class:`AddressRefused`."""
    if _BAD.search(url):
        raise AddressRefused(
            f"{what} {url[:200]!r} contains a backslash, space, control or non-ASCII character; percent-encode it"
        )
    try:
        u, s = parse_url(url), urlsplit(url)
        s_port = s.port
    except (ValueError, urllib3.exceptions.LocationParseError):
        raise AddressRefused(f"{what} {url[:200]!r} is not a valid URL")
    if (u.scheme or "").lower() not in ("http", "https"):
        raise AddressRefused(f"{what} {url[:200]!r}: only http and https URLs are fetched")
    if u.auth is not None or "@" in s.netloc:
        raise AddressRefused(f"{what} {url[:200]!r} carries a user name (user@host); refused")
    if not u.host or "%" in s.netloc:
        raise AddressRefused(f"{what} {url[:200]!r} has no plain host name")
    if (u.host.lower().strip("[]"), u.port) != ((s.hostname or "").lower(), s_port):
        raise AddressRefused(f"{what} {url[:200]!r} reads differently to different URL parsers; refused")
    return url


# -- deadlines ---------------------------------------------------------------------------------


class Call:
    """One upstream call: its total deadline (monotonic seconds), the connection serving it,
    and why it was stopped, if it was (``reason``: the deadline, or its request's
    :class:`Scope` being stopped)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.reason: str | None = None
        self.conn = None
        scope = getattr(_current, "scope", None)
        if scope is not None:
            scope.add(self)

    @property
    def expired(self) -> bool:
        return self.reason is not None

    def stop(self, reason: str) -> None:
        """Cut the call off now: its socket is shut down, so a blocked read returns."""
        self.reason = self.reason or reason
        conn = self.conn
        if conn is not None and getattr(conn, "_vo_call", None) is self:
            sock = getattr(conn, "_vo_sock", None)  # http.client drops conn.sock once a closing answer began
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Scope:
    """The upstream calls made for one client request (a sync query, an async job), so that
    they stop together when it is cancelled (client gone, sync limit, UWS ABORT).  Active for
    the calls made in a thread between :meth:`enter` and :meth:`exit`."""

    def __init__(self):
        self.calls: list[Call] = []
        self.reason: str | None = None
        self.lock = threading.Lock()

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls = [c for c in self.calls if c.conn is None or getattr(c.conn, "_vo_call", None) is c]
            self.calls.append(call)
        if self.reason is not None:
            call.stop(self.reason)

    def stop(self, reason: str) -> None:
        with self.lock:
            self.reason = self.reason or reason
            calls = list(self.calls)
        for c in calls:
            c.stop(self.reason)

    @classmethod
    def of(cls, context, default_reason: str) -> Scope:
        """A Scope stopped when ``context`` (a :class:`~gateway.uws.executor.JobContext`) is
        cancelled, active in this thread from now until :meth:`exit`."""
        scope = cls()
        context.on_cancel(lambda: scope.stop(context.reason or default_reason))
        scope.enter()
        return scope

    def enter(self) -> None:
        _current.scope = self

    @staticmethod
    def exit() -> None:
        _current.scope = None


def current_scope() -> Scope | None:
    """The :class:`Scope` active in this thread (to enter it in the threads a request starts)."""
    return getattr(_current, "scope", None)


class _Watchdog:
    """One daemon thread that shuts down the socket of a connection whose call outlived its
    deadline (a trickling upstream never times out a single read)."""

    def __init__(self):
        self.heap: list = []
        self.cond = threading.Condition()
        self.thread = None
        self.seq = 0

    def add(self, call: Call, conn) -> None:
        if call.deadline is None:
            return
        with self.cond:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="upstream-deadlines", daemon=True)
                self.thread.start()
            self.seq += 1
            heapq.heappush(self.heap, (call.deadline, self.seq, call, conn))
            self.cond.notify()

    def _run(self):
        while True:
            with self.cond:
                while not self.heap or self.heap[0][0] > time.monotonic():
                    self.cond.wait(None if not self.heap else max(0.0, self.heap[0][0] - time.monotonic()))
                _, _, call, conn = heapq.heappop(self.heap)
            if getattr(conn, "_vo_call", None) is call:  # the connection still serves that call
                call.stop(f"did not finish within its deadline of {call.seconds:g} s")


_watchdog = _Watchdog()
_current = threading.local()


class _Guarded:
    """Connection mixin: resolve once, check the policy, connect to the checked IP; register
    the current call's deadline."""

    policy: AddressPolicy
    scheme = "http"

    def _new_conn(self):
        host, port = self._dns_host, self.port
        self.policy.check_origin(self.scheme, host, port)
        try:
            infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise urllib3.exceptions.NameResolutionError(self.host, self, e) from e
        for info in infos:  # every address the name has must be allowed, not just the first
            self.policy.check_ip(host, info[4][0])
        err = None
        for family, kind, proto, _, addr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                for opt in self.socket_options or ():
                    sock.setsockopt(*opt)
                sock.settimeout(self.timeout if isinstance(self.timeout, (int, float)) else None)
                sock.connect(addr)
                return sock
            except OSError as e:
                sock.close()
                err = e
        if isinstance(err, socket.timeout):
            raise urllib3.exceptions.ConnectTimeoutError(self, f"connection to {self.host} timed out")
        raise urllib3.exceptions.NewConnectionError(self, f"failed to connect: {err}")

    def connect(self):
        super().connect()
        self._vo_sock = self.sock
        call = getattr(_current, "call", None)
        if call is not None and getattr(self, "_vo_call", None) is call:
            _watchdog.add(call, self)

    def request(self, *a, **k):
        call = getattr(_current, "call", None)
        self._vo_call = call
        if call is not None:
            call.conn = self
        if call is not None and self.sock is not None:  # a kept-alive connection: connect() is skipped
            self._vo_sock = self.sock
            _watchdog.add(call, self)
        return super().request(*a, **k)


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """A requests transport whose connections obey ``policy`` (see the module docstring)."""

    def __init__(self, policy: AddressPolicy, **kw):
        self.policy = policy
        super().__init__(**kw)

    def init_poolmanager(self, *a, **k):
        super().init_poolmanager(*a, **k)
        policy = getattr(self, "policy", AddressPolicy())
        http = type("GuardedHTTPConnection", (_Guarded, HTTPConnection), {"policy": policy, "scheme": "http"})
        https = type("GuardedHTTPSConnection", (_Guarded, HTTPSConnection), {"policy": policy, "scheme": "https"})
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }


#: requests in flight to one upstream (its origin set), every session and user together
#: (``limits.upstream_concurrency``; :func:`set_concurrency`)
_CONCURRENCY = 16
_SLOTS: dict[frozenset, tuple[int, threading.BoundedSemaphore]] = {}
_SLOTS_LOCK = threading.Lock()


def set_concurrency(n: int) -> None:
    """The cap on concurrent requests to each archive's upstream (config ``limits``)."""
    global _CONCURRENCY
    _CONCURRENCY = n


def _slots(origins: frozenset) -> threading.BoundedSemaphore:
    with _SLOTS_LOCK:
        size, sem = _SLOTS.get(origins, (0, None))
        if sem is None or size != _CONCURRENCY:
            sem = threading.BoundedSemaphore(_CONCURRENCY)
            _SLOTS[origins] = (_CONCURRENCY, sem)
        return sem


class UpstreamSession(requests.Session):
    """The HTTP client of an archive (or of TAP_UPLOAD fetches): a default timeout (pyvo passes
    none) and a total ``deadline`` per call, only the ``origins`` given (a URL or redirect to any
    other host is refused, so no request parameter can make the gateway fetch elsewhere; None:
    any public address), and no cookie jar: a user's login cookie is set per session and never
    kept.  The environment (proxy variables) is read once per session, for its origins, instead
    of on every request as requests does (about 0.5 ms a call); a ``.netrc`` is never consulted,
    so no service-wide login can reach an upstream on a user's behalf.  Redirects are followed
    here (at most :attr:`MAX_REDIRECTS`), each ``Location`` checked like the first URL.

    At most ``limits.upstream_concurrency`` requests run at once against one upstream (its
    origins), whichever user or query they serve; a request that finds no free slot within the
    read timeout fails as TransientFault.  A streamed response holds its slot until it is closed.

    Each response carries ``upstream_call`` (:class:`Call`); read streamed bodies with
    :func:`iter_body` or :func:`read_body`."""

    MAX_REDIRECTS = 5

    def __init__(
        self,
        origins: set[str] | None,
        timeout: float,
        adapter: GuardedAdapter | None = None,
        deadline: float | None = 600.0,
        allow_private: bool = False,
    ):
        super().__init__()
        from http.cookiejar import DefaultCookiePolicy

        self.origins = None if origins is None else frozenset(origins)
        self.default_timeout = (10, timeout)
        self.deadline = deadline
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # store nothing the upstream sets
        self.trust_env = False
        from . import __version__

        self.headers["User-Agent"] = f"vo-gateway/{__version__} (IVOA gateway; python-requests)"  # say who calls
        self.origin_proxies = {o: requests.utils.get_environ_proxies(o) for o in self.origins or ()}
        adapter = adapter or GuardedAdapter(AddressPolicy(self.origins, allow_private))
        self.mount("http://", adapter)  # one connection pool for every user's session
        self.mount("https://", adapter)

    def _what(self) -> str:
        return f"upstream {sorted(self.origins)[0]}" if self.origins else "the remote server"

    def _slot(self):
        """Take one of the upstream's request slots; returns the function that gives it back
        (once).  Sessions without fixed origins (TAP_UPLOAD fetches) are not capped."""
        if not self.origins:
            return lambda: None
        sem = _slots(self.origins)
        if not sem.acquire(timeout=self.default_timeout[1]):
            raise TransientFault(
                f"{self._what()} is busy: {_CONCURRENCY} requests to it are running already "
                "(limits.upstream_concurrency); retry later"
            )
        done = threading.Event()

        def release() -> None:
            if not done.is_set():
                done.set()
                sem.release()

        return release

    def request(self, method, url, *a, **k):
        k.setdefault("timeout", self.default_timeout)
        k.setdefault("verify", self.verify)  # explicit: REQUESTS_CA_BUNDLE would override the session's
        k.setdefault("cert", self.cert)
        k["allow_redirects"] = False
        call = Call(self.deadline)
        if call.expired:  # its request was cancelled already
            raise TransientFault(f"{self._what()} not asked: {call.reason}")
        for hop in range(self.MAX_REDIRECTS + 1):
            try:
                check_url(url, "URL" if hop == 0 else "redirect to")
                if self.origins is not None and origin(url) not in self.origins:
                    raise AddressRefused(f"{origin(url)} is not a configured upstream")
                release = self._slot()
                _current.call = call
                t0, status = time.perf_counter(), None
                try:
                    r = super().request(method, url, *a, proxies=self.origin_proxies.get(origin(url)), **k)
                    status = r.status_code
                except BaseException:
                    release()
                    raise
                finally:
                    _current.call = None
                    record_upstream(method, url, status, time.perf_counter() - t0, None if self.origins else "upload")
                if k.get("stream"):
                    _release_on_close(r, release)
                else:
                    release()
            except AddressRefused as e:
                if self.origins is None:  # a user's URL (TAP_UPLOAD): the user's mistake
                    raise
                raise TransientFault(f"{self._what()} pointed the gateway to another address ({e.message})")
            except requests.RequestException as e:
                if call.expired:
                    raise TransientFault(f"{self._what()} {call.reason}")
                if isinstance(e, requests.exceptions.ChunkedEncodingError):  # the body, read here, was cut
                    raise TransientFault(
                        f"{self._what()} broke off its answer ({e.__class__.__name__}: shorter "
                        "than its Content-Length or without its last chunk)"
                    )
                raise
            r.upstream_call = call
            if call.expired:
                r.close()
                raise TransientFault(f"{self._what()} {call.reason}")
            if not r.is_redirect:
                return r
            r.close()
            url = urljoin(url, r.headers["Location"])
            if r.status_code == 303:
                method, k = "GET", {key: v for key, v in k.items() if key not in ("data", "files", "json")}
        raise TransientFault(f"{self._what()} redirected more than {self.MAX_REDIRECTS} times")


def _release_on_close(r: requests.Response, release) -> None:
    """A streamed response gives its slot back when closed, or when it is garbage-collected."""
    import weakref

    close = r.close

    def closing():
        try:
            close()
        finally:
            release()

    r.close = closing  # type: ignore[method-assign]
    weakref.finalize(r, release)


# -- reading bodies ----------------------------------------------------------------------------

_ERRORS = (OSError, requests.RequestException, urllib3.exceptions.HTTPError)


def upstream_get(
    session: requests.Session,
    what: str,
    url: str,
    params=None,
    timeout: float | None = None,
    refused: str | None = None,
) -> requests.Response:
    """GET ``url`` through ``session`` (an :class:`UpstreamSession`).  Timeouts, connection
    failures and HTTP 5xx become TransientFault naming ``what`` (``timeout``: the session's
    read timeout, for the message); with ``refused`` set, HTTP 4xx becomes a UsageFault
    "``what`` refused ``refused``: <the upstream's text>"."""
    try:
        r = session.get(url, params=params)
    except requests.Timeout:
        raise TransientFault(f"{what} did not answer" + (f" within {timeout} s" if timeout else ""))
    except requests.RequestException as e:
        raise TransientFault(f"{what} unreachable ({type(e).__name__})")
    if r.status_code >= 500:
        raise TransientFault(f"{what} failed: HTTP {r.status_code} {r.text[:300]}")
    if refused is not None and r.status_code >= 400:
        raise UsageFault(f"{what} refused {refused}: {r.text.strip()[:300]}")
    return r


def iter_body(r: requests.Response, what: str, size: int = 1 << 20) -> Iterator[bytes]:
    """The body of a streamed response in content-decoded chunks as they arrive (at most
    ``size`` bytes each), or the body already read.  Raises TransientFault "``what`` broke off
    its answer" when the connection fails, the body is shorter than its ``Content-Length``,
    a chunked body lacks its last chunk, or the call's deadline cut it."""
    call = getattr(r, "upstream_call", None)
    if r._content not in (False, None):
        yield r._content  # type: ignore[misc]  # bytes once read
    else:
        try:
            yield from r.raw.stream(size, decode_content=True)
        except _ERRORS as e:
            if call is not None and call.expired:
                raise TransientFault(f"{what} {call.reason}")
            raise TransientFault(f"{what} broke off its answer ({type(e).__name__})")
    if call is not None and call.expired:
        raise TransientFault(f"{what} {call.reason}")


def read_body(r: requests.Response, what: str, kind: str | None = None) -> bytes:
    """The whole body (see :func:`iter_body`); with ``kind`` (``votable``, ``csv``) also
    checked to end as that format ends (:func:`check_complete`)."""
    body = b"".join(iter_body(r, what))
    r._content = body
    if kind is not None:
        check_complete(body, kind, what)
    return body


_VOTABLE_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?VOTABLE\s*>\s*(?:<!--.*?-->\s*)*\Z", re.S)


def check_complete(body: bytes, kind: str, what: str) -> None:
    """Raise TransientFault when ``body`` stops before its format's end: a VOTable without its
    closing ``</VOTABLE>`` (VOTable 1.4 §3), a non-empty CSV without its final line end
    (RFC 4180 §2: the upstreams the gateway reads end every record), or a FITS file that is
    shorter than its last HDU's header says (FITS 4.0 §3.1, §4.4.1: whole 2880-byte blocks,
    data of |BITPIX|/8 x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn) bytes).  A cut exactly between
    two HDUs cannot be told from a shorter file: FITS has no end marker."""
    if kind == "fits":
        if not _fits_whole(body):
            raise TransientFault(f"{what} broke off its answer (the FITS file ends before its last HDU does)")
    elif kind == "votable":
        if not _VOTABLE_END.search(body[-4096:]):
            raise TransientFault(f"{what} broke off its answer (the VOTable has no closing </VOTABLE>)")
    elif kind == "csv":
        if body.strip() and not body.endswith(b"\n"):
            raise TransientFault(f"{what} broke off its answer (the CSV ends inside a record)")


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (for pyarrow's CSV reader and tarfile
    over an upstream answer that has been partly read already)."""

    def __init__(self, chunks):
        self.chunks, self.buf = iter(chunks), b""

    def readable(self):
        return True

    def readinto(self, b):
        while not self.buf:
            self.buf = next(self.chunks, None)
            if self.buf is None:
                self.buf = b""
                return 0
        n = min(len(b), len(self.buf))
        b[:n], self.buf = self.buf[:n], self.buf[n:]
        return n


def _fits_whole(body: bytes) -> bool:
    """Whether ``body`` is FITS whose every HDU (header to END, then its data) is complete."""
    if not body.startswith(b"SIMPLE  ="):
        return False
    pos, n = 0, len(body)
    while pos < n:
        cards: dict[bytes, bytes] = {}
        while True:  # header blocks up to the END card
            block = body[pos : pos + 2880]
            if len(block) < 2880:
                return False
            pos += 2880
            block_cards = [block[i : i + 80] for i in range(0, 2880, 80)]
            for card in block_cards:
                if card[:8].rstrip() == b"END":
                    break
                if card[8:10] == b"= ":
                    cards[card[:8].rstrip()] = card[10:].split(b"/", 1)[0].strip()
            else:
                continue
            break
        try:
            naxis = int(cards.get(b"NAXIS", b"0"))
            size = 0
            if naxis:
                size = 1
                for i in range(1, naxis + 1):
                    size *= int(cards[b"NAXIS%d" % i])
            size = (
                abs(int(cards.get(b"BITPIX", b"8")))
                // 8
                * int(cards.get(b"GCOUNT", b"1"))
                * (int(cards.get(b"PCOUNT", b"0")) + size)
            )
        except (KeyError, ValueError):
            return False
        pos += -(-size // 2880) * 2880
        if pos > n:
            return False
    return pos == n


def checked_csv(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    """Pass CSV chunks through; at their end raise TransientFault if the last record has no
    line end (the answer was cut inside a record; :func:`check_complete`)."""
    last = b""
    for chunk in chunks:
        if chunk:
            last = chunk
        yield chunk
    if last.strip() and not last.endswith(b"\n"):
        raise TransientFault(f"{what} broke off its answer (the CSV ends inside a record)")
