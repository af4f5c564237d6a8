"""Per-key rate limits: a token bucket per API key, in this process.

Covered by tests/service/test_security.py (and the 429s by tests/service/test_api_auth.py).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from service.errors import RateLimited


class RateLimiter:
    """Per-key token bucket: `burst` requests at once, refilled at `per_minute` / 60 per second.

    In-process only: with several replicas each enforces its own bucket, so a key gets up to N times the limit.
    The compose deployment's proxy holds the per-minute total over all replicas (deploy/haproxy/haproxy.cfg,
    tested by tests/deploy/test_replicas.py); this bucket still caps each replica's bursts.
    """

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: object) -> float:
        """Take one token for `key`. Returns 0.0 when allowed, else the seconds until a token is available."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def check(self, key: object) -> None:
        """`acquire`, raising 429 `rate_limited` with a whole-second Retry-After when the bucket is empty."""
        wait = self.acquire(key)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise RateLimited("rate_limited", f"rate limit exceeded; retry in {retry} s", retry_after=retry)
