"""Per-user token buckets, in memory and bounded: each instance limits what it serves."""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, max_users: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.max_users = max_users
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # user -> (tokens, at)

    def take(self, user: str, now: float | None = None) -> float:
        """0 if the request may go ahead, else the seconds until it may (for Retry-After)."""
        now = time.monotonic() if now is None else now
        tokens, at = self.buckets.pop(user, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self.buckets[user] = (tokens, now)
        if len(self.buckets) > self.max_users:
            self.buckets.popitem(last=False)  # the least recently seen user: a full bucket again
        return wait

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
