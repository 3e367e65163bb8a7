"""Google ID tokens for calling a private Cloud Run service (audience: its URL): the gateway's
calls to the orchestrator, and the orchestrator's to a model server on Cloud Run.

On Cloud Run the metadata server mints them for the service's own account; they
live an hour, so one is reused until five minutes before it expires.
"""

from __future__ import annotations

import asyncio
import time

import google.auth.transport.requests
import google.oauth2.id_token

REFRESH_MARGIN_SECONDS = 300
ID_TOKEN_LIFETIME_SECONDS = 3600


class IdTokenSource:
    def __init__(self, audience: str) -> None:
        self.audience = audience
        self.token: str | None = None
        self.expires_at = 0.0
        self.lock = asyncio.Lock()

    async def header(self) -> dict[str, str]:
        if time.monotonic() > self.expires_at - REFRESH_MARGIN_SECONDS:
            async with self.lock:
                if time.monotonic() > self.expires_at - REFRESH_MARGIN_SECONDS:
                    # google-auth is synchronous: keep the event loop free while it asks the metadata server.
                    self.token = await asyncio.to_thread(
                        google.oauth2.id_token.fetch_id_token,
                        google.auth.transport.requests.Request(),
                        self.audience,
                    )
                    self.expires_at = time.monotonic() + ID_TOKEN_LIFETIME_SECONDS
        return {"Authorization": f"Bearer {self.token}"}


class NoToken:
    """Local runs, and backends that are not Cloud Run services: no token."""

    async def header(self) -> dict[str, str]:
        return {}
