"""Model backends that speak OpenAI's chat completions protocol."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp
import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests

from services.modelcalls.settings import BackendSettings
from services.servicekit.identity import IdTokenSource

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# The encodings aiohttp decodes without optional packages (Brotli, zstd are not installed).
DECODED_ENCODINGS = ("identity", "gzip", "deflate")


class BackendUnavailable(Exception):
    """The backend gave no answer we can pass on: nothing has been sent to the caller yet."""


class GoogleAccessToken:
    """The service account's OAuth access token, refreshed five minutes before it expires."""

    def __init__(self, scopes: list[str]) -> None:
        self.scopes = scopes
        self.credentials: google.auth.credentials.Credentials | None = None
        self.lock = asyncio.Lock()

    async def get(self) -> str:
        async with self.lock:
            if self.credentials is None:
                found, _ = await asyncio.to_thread(google.auth.default, scopes=self.scopes)
                self.credentials = found
            credentials = self.credentials
            expiry = getattr(credentials, "expiry", None)
            if not credentials.valid or (expiry and expiry.timestamp() - time.time() < 300):
                await asyncio.to_thread(credentials.refresh, google.auth.transport.requests.Request())
            token = credentials.token
            if not isinstance(token, str):
                raise google.auth.exceptions.RefreshError("the credentials hold no access token after a refresh")
            return token


class Backend:
    def __init__(self, name: str, settings: BackendSettings, tokens: GoogleAccessToken | None = None) -> None:
        self.name, self.settings, self.tokens = name, settings, tokens
        if settings.kind == "vertex":
            # cloud.google.com/vertex-ai/generative-ai/docs/multimodal/call-vertex-using-openai-library
            self.url = (
                f"https://{settings.location}-aiplatform.googleapis.com/v1/projects/{settings.project}"
                f"/locations/{settings.location}/endpoints/openapi/chat/completions"
            )
        else:
            self.url = (settings.url or "").rstrip("/") + "/chat/completions"  # validated: openai has a url
        self.id_tokens = IdTokenSource(settings.audience) if settings.auth == "google-id-token" else None

    async def headers(self) -> dict[str, str]:
        if self.settings.kind == "vertex":
            if self.tokens is None:
                raise BackendUnavailable(f"{self.name}: a vertex backend needs access tokens")
            return {"Authorization": f"Bearer {await self.tokens.get()}"}
        if self.id_tokens:
            return await self.id_tokens.header()
        if self.settings.api_key_env and (key := os.environ.get(self.settings.api_key_env)):
            return {"Authorization": f"Bearer {key}"}
        return {}

    async def open(
        self, client: aiohttp.ClientSession, body: dict[str, Any], first_byte_timeout: float, model: str | None = None
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """The backend's response, headers read, with a stream's first bytes (b"" for the rest);
        BackendUnavailable if it has none to give within ``first_byte_timeout``. ``model``: the
        one to ask for instead of the caller's (a spill target's)."""
        payload = {**body, "model": model or self.settings.model or body["model"]}
        if payload.get("stream"):
            payload["stream_options"] = {"include_usage": True}
        # Uncompressed, please: aiohttp would otherwise ask for gzip, and the usage must be read.
        headers = {"Accept-Encoding": "identity", **await self.headers()}
        try:
            return await asyncio.wait_for(self._begun(client, payload, headers), first_byte_timeout)
        except (TimeoutError, aiohttp.ClientError, google.auth.exceptions.GoogleAuthError) as err:
            raise BackendUnavailable(f"{self.name}: {type(err).__name__}") from None

    async def _begun(
        self, client: aiohttp.ClientSession, payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        response = await client.post(self.url, json=payload, headers=headers)
        # Vertex AI's 429 is capacity or quota, to retry elsewhere or later
        # (docs.cloud.google.com/vertex-ai/generative-ai/docs/model-reference/api-errors).
        if response.status >= 500 or response.status in (408, 429):
            response.release()
            raise BackendUnavailable(f"{self.name}: HTTP {response.status}")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in DECODED_ENCODINGS:  # bytes neither the ledger nor the caller could read
            response.release()
            raise BackendUnavailable(f"{self.name}: Content-Encoding {encoding}")
        if not payload.get("stream") or response.status != 200:
            return response, b""
        # vLLM sends a stream's status and headers before its engine has taken the request
        # (vllm/entrypoints/openai/chat_completion/serving.py: "we return a success status before
        # we actually start generating text"), so a request queued there has begun only at its
        # first bytes. Until then another backend may still take it: this one's connection is
        # closed, which aborts the request there, so no answer is generated twice.
        try:
            head = await response.content.readany()
        except BaseException:
            response.close()
            raise
        if not head:
            response.close()
            raise BackendUnavailable(f"{self.name}: the stream ended before its first byte")
        return response, head
