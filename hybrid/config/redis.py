"""Typed settings for the optional Memorystore for Redis instance that holds the gateway's
rate-limit buckets, shared by all its instances."""

from __future__ import annotations

from typing import Annotated, Literal

from hybrid.config.validation import Settings, between


class RedisSettings(Settings):
    enabled: bool = False
    # BASIC has no replica: a restart or maintenance empties it, and every user's bucket is full
    # again for a moment. STANDARD_HA keeps a replica in another zone and fails over to it
    # (cloud.google.com/memorystore/docs/redis/redis-tiers).
    tier: Literal["BASIC", "STANDARD_HA"] = "STANDARD_HA"
    # cloud.google.com/memorystore/docs/redis/redis-tiers: 1 GB is the smallest instance; a bucket
    # is two small fields a user, so 1 GB holds millions of users.
    memory_size_gb: Annotated[int, between(1, 300)] = 1
    # Redis 7 takes the most TLS connections per instance: about 65,000 at any size
    # (cloud.google.com/memorystore/docs/redis/in-transit-encryption#connection_limits_for_in-transit_encryption).
    version: Literal["REDIS_7_2", "REDIS_7_0"] = "REDIS_7_2"
