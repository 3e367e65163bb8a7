"""A JWKS URL's keys, cached: fetched again after ``ttl`` seconds, or on an unknown key id (at
most once per ``min_refresh`` seconds, one fetch at a time, shared by all who wait). The gateway
checks its users' tokens with it, the orchestrator its callers' Google ID tokens."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Container
from typing import Any

import aiohttp
import jwt

MAX_KEYS = 32
MAX_JWKS_BYTES = 262_144  # Google's key sets are a few KB; MAX_KEYS RSA-4096 keys fit many times over


class Unauthorized(Exception):
    """The request carries no valid token; ``reason`` is for logs, never for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def bearer_token(authorization: str | None, max_bytes: int) -> str:
    """The token of an ``Authorization: Bearer`` header."""
    if not authorization:
        raise Unauthorized("no Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("not a bearer token")
    if len(token) > max_bytes:
        raise Unauthorized("token too large")
    return token


def token_head(token: str, algorithms: Container[str]) -> tuple[str, str]:
    """The algorithm (one of ``algorithms``) and key id the token's header names, unverified."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("malformed token") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in algorithms:
        raise Unauthorized(f"algorithm not allowed: {str(algorithm)[:16]}")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise Unauthorized("no key id")
    return algorithm, kid


class JwksCache:
    def __init__(self, url: str, client: aiohttp.ClientSession, ttl: float, min_refresh: float) -> None:
        self.url, self.client, self.ttl, self.min_refresh = url, client, ttl, min_refresh
        self.keys: dict[str, dict[str, Any]] = {}
        self.fetched_at = float("-inf")
        self.fetching: asyncio.Task[str | None] | None = None  # the fetch in flight, if any

    async def key(self, kid: str) -> dict[str, Any]:
        failure = None
        age = time.monotonic() - self.fetched_at
        if age > self.ttl or kid not in self.keys:
            if self.fetching is None and (age > self.ttl or age >= self.min_refresh):
                self.fetching = asyncio.ensure_future(self._refresh())
            if self.fetching is not None:
                # One fetch at a time: whoever needs the keys meanwhile waits for that same
                # fetch, not in a queue for one of its own (five unknown key ids took up to 5 x
                # 5 s). Shielded: a caller that leaves does not cancel it for the others.
                failure = await asyncio.shield(self.fetching)
        if kid not in self.keys:
            raise Unauthorized(failure or "unknown key id")
        return self.keys[kid]

    async def _refresh(self) -> str | None:
        """Fetch the key set; on failure keep the keys we had (a JWKS hiccup must not log
        everyone out) and return why it failed."""
        self.fetched_at = time.monotonic()
        try:
            async with self.client.get(self.url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                response.raise_for_status()
                # The body may come in any number of reads (split writes, chunks): read to the end,
                # within the limit.
                content = bytearray()
                async for piece in response.content.iter_any():
                    content += piece
                    if len(content) > MAX_JWKS_BYTES:
                        raise ValueError("JWKS too large")
            document = json.loads(content)
            keys = [k for k in document.get("keys", []) if isinstance(k, dict) and isinstance(k.get("kid"), str)]
            self.keys = {k["kid"]: k for k in keys[:MAX_KEYS]}
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError) as err:
            return f"JWKS unavailable: {type(err).__name__}"
        finally:
            self.fetching = None
        return None
