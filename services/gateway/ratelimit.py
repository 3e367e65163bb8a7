"""Per-user token buckets: shared by every gateway instance in Redis, in memory while it is away.

With one bucket per instance, a user would get the limit times the number of instances. The
shared bucket is one Lua script, which Redis runs atomically (redis.io/docs/latest/develop/
programmability/eval-intro: "Redis guarantees the script's atomic execution"), on Redis' own
clock, so instances whose clocks differ agree. When Redis cannot answer within its timeout the
instance falls back to its own buckets: still a limit (per instance), never none. Each fallback
is counted (``fallbacks``, on /health) and logged as a warning at most once a minute, which a
log-based metric counts where the stacks make Memorystore.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from services.gateway.settings import FALLBACK_MESSAGE, GatewaySettings
from services.servicekit import logs

log = logging.getLogger("gateway.ratelimit")

# KEYS[1]: the user's bucket; ARGV: tokens a second, burst. Returns the seconds to wait (0: go
# ahead), as a string since Redis turns a Lua number into an integer.
TOKEN_BUCKET = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""
WARN_EVERY_SECONDS = 60


class RateLimiter:
    """One instance's buckets, bounded in number."""

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


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


class SharedRateLimiter:
    """The buckets in Redis, shared by every instance; this instance's own while Redis is away."""

    def __init__(
        self, client: redis.asyncio.Redis, local: RateLimiter, timeout_seconds: float, retry_seconds: float
    ) -> None:
        self.client, self.local, self.timeout, self.retry = client, local, timeout_seconds, retry_seconds
        self.script = client.register_script(TOKEN_BUCKET)
        self.fallbacks = 0  # requests limited per instance because Redis did not answer
        self.shared = True
        self._warned_at = -math.inf
        # After a failure Redis is left alone for retry_seconds: a hung Redis then costs one
        # timeout that often, not one per request.
        self._redis_after = -math.inf

    async def take(self, user: str) -> float:
        # A fixed-size key whatever the user id; the id itself is not stored.
        key = "ratelimit:" + hashlib.sha256(user.encode()).hexdigest()[:32]
        if time.monotonic() < self._redis_after:
            self.fallbacks += 1
            return self.local.take(user)
        try:
            answer = await asyncio.wait_for(
                self.script(keys=[key], args=[self.local.rate, self.local.burst]), self.timeout
            )
        except (RedisError, OSError, TimeoutError) as err:
            self._redis_after = time.monotonic() + self.retry
            self._fell_back(err)
            return self.local.take(user)
        if not self.shared:
            logs.event(log, "rate limit shared again: Redis answers", fallbacks=self.fallbacks)
            self.shared = True
        return float(answer)

    def _fell_back(self, err: BaseException) -> None:
        self.fallbacks += 1
        now = time.monotonic()
        if self.shared or now - self._warned_at >= WARN_EVERY_SECONDS:
            # A log-based metric can count these by their message; /health shows the count.
            logs.event(
                log,
                FALLBACK_MESSAGE,
                logging.WARNING,
                error=type(err).__name__,
                fallbacks=self.fallbacks,
            )
            self._warned_at = now
        self.shared = False

    async def close(self) -> None:
        await self.client.aclose()


def limiter_for(settings: GatewaySettings) -> SharedRateLimiter | LocalRateLimiter:
    local = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    if not settings.redis_host:
        return LocalRateLimiter(local)
    client = redis.asyncio.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        password=settings.redis_auth,
        # Memorystore's in-transit encryption: TLS, the server verified against the instance's CA
        # (cloud.google.com/memorystore/docs/redis/in-transit-encryption). Clients reach it by
        # its IP address, so the CA is checked and not a host name.
        ssl=settings.redis_server_ca is not None,
        ssl_ca_data=settings.redis_server_ca,
        ssl_check_hostname=False,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry=Retry(NoBackoff(), 0),  # the fallback is the retry: a request never waits on a second try
    )
    return SharedRateLimiter(client, local, settings.redis_timeout_seconds, settings.redis_retry_seconds)


class LocalRateLimiter:
    """Per instance only: where no Redis is configured (local runs)."""

    def __init__(self, local: RateLimiter) -> None:
        self.local = local
        self.fallbacks = 0
        self.shared = False

    async def take(self, user: str) -> float:
        return self.local.take(user)

    async def close(self) -> None:
        return None
