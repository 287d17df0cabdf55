"""Request-rate limits per user and per client address, on the ``limits`` library (the engine
of Flask-Limiter), with in-process memory or a shared Redis as the counter store
(``docs/deployment.md`` § Limits).

* The caller's requests to each protocol are limited (``limits.per_user``, e.g. ``tap:
  600/minute``). The caller is the actor's owner key, or the client address for anonymous
  callers.
* Every request from one client address is limited too (``limits.per_address``).
* Over a limit, the answer is HTTP 429 with ``Retry-After`` (seconds) and a DALI error document
  (DALI 1.1 §4.2, ``QUERY_STATUS=ERROR``). pyvo raises ``DALRateLimitError`` on it.

The concurrency caps live where the work is: async jobs per owner in
:class:`gateway.uws.service.JobService` (``limits.async_jobs_per_user``), and concurrent upstream
requests per archive in :class:`gateway.upstream.UpstreamSession`
(``limits.upstream_concurrency``).
"""

from __future__ import annotations

import math
import time

from flask import Flask, current_app, request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .faults import RateLimitFault
from .ops import CURRENT

EXEMPT = ("ops", "web")  # probes, metrics and the pages themselves (their API calls are counted)


class RequestLimiter:
    def __init__(self, config):
        self.config = config
        self.strategy = MovingWindowRateLimiter(storage_from_string(config.storage_url))
        self.per_user = {p: parse(v) for p, v in config.per_user.items()}
        self.per_address = parse(config.per_address) if config.per_address else None

    def check(self, protocol: str, user: str | None, address: str) -> None:
        """Count one request; RateLimitFault (429) when a limit is already used up."""
        checks = []
        if protocol in self.per_user:
            who = f"user:{user}" if user else f"address:{address}"
            checks.append((self.per_user[protocol], ("vo-gateway", protocol, who), f"{protocol} requests"))
        if self.per_address is not None:
            checks.append((self.per_address, ("vo-gateway", "any", f"address:{address}"), "requests from your address"))
        for item, keys, what in checks:
            if not self.strategy.hit(item, *keys):
                reset = self.strategy.get_window_stats(item, *keys).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                raise RateLimitFault(
                    f"too many {what}: the limit is {item}; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )


def init_app(app: Flask, config) -> None:
    """Check every request against ``config`` (``GatewayConfig.limits``) before its view runs."""
    if not config.enabled:
        return
    limiter = RequestLimiter(config)
    app.extensions["vo_gateway_limiter"] = limiter

    def _check():
        state = CURRENT.get()
        protocol = state.protocol if state is not None else "web"
        if protocol in EXEMPT:
            return
        from .uws.service import owner_of

        _, key = owner_of(current_app.extensions["vo_gateway"].actor())
        limiter.check(protocol, key, request.remote_addr or "unknown")

    app.before_request(_check)
