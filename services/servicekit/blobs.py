"""Objects in a Cloud Storage bucket through the JSON API, on the services' own aiohttp session.

Only what batch files need: write an object once, read it whole or in chunks, ask whether it is
there, delete it. Writes carry ``ifGenerationMatch=0`` (cloud.google.com/storage/docs/request-preconditions),
so a retried or repeated write of the same name never replaces what is there: the second one is
refused with 412 and taken as done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import quote

import aiohttp

from services.servicekit.endpoints import STORAGE_URL

CHUNK_BYTES = 1 << 16


class TokenSource(Protocol):
    """An OAuth access token for the service's identity (modelcalls.backends.GoogleAccessToken)."""

    async def get(self) -> str: ...


class BlobNotFound(LookupError):
    """The object does not exist."""


class BlobStoreError(RuntimeError):
    """Cloud Storage answered something other than success or 'not found'."""


class BlobStore:
    def __init__(
        self,
        bucket: str,
        session: aiohttp.ClientSession,
        tokens: TokenSource | None,
        endpoint: str = STORAGE_URL,
    ) -> None:
        self.bucket, self.session, self.tokens = bucket, session, tokens
        self.endpoint = endpoint.rstrip("/")

    async def _headers(self) -> dict[str, str]:
        # Identity encoding: an object is read as stored, never decompressed on the way.
        headers = {"accept-encoding": "identity"}
        if self.tokens is not None:
            headers["authorization"] = f"Bearer {await self.tokens.get()}"
        return headers

    def _object_url(self, name: str) -> str:
        # An object's name is one path segment of the JSON API's URL: '/' is escaped too
        # (cloud.google.com/storage/docs/request-endpoints#encoding).
        return f"{self.endpoint}/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}"

    async def put(self, name: str, data: bytes, content_type: str = "application/jsonl") -> None:
        """Write ``name`` once (a single-request media upload: cloud.google.com/storage/docs/uploading-objects)."""
        url = f"{self.endpoint}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o"
        params = {"uploadType": "media", "name": name, "ifGenerationMatch": "0"}
        headers = {**await self._headers(), "content-type": content_type}
        async with self.session.post(url, params=params, data=data, headers=headers) as answer:
            if answer.status == 412:  # already there: an earlier write of the same name
                return
            if answer.status >= 300:
                raise BlobStoreError(f"writing gs://{self.bucket}/{name}: HTTP {answer.status}")

    async def get(self, name: str) -> bytes:
        return b"".join([chunk async for chunk in self.stream(name)])

    async def stream(self, name: str) -> AsyncIterator[bytes]:
        """The object's bytes as they arrive (cloud.google.com/storage/docs/downloading-objects, alt=media)."""
        async with self.session.get(
            self._object_url(name), params={"alt": "media"}, headers=await self._headers()
        ) as answer:
            if answer.status == 404:
                raise BlobNotFound(f"gs://{self.bucket}/{name}")
            if answer.status >= 300:
                raise BlobStoreError(f"reading gs://{self.bucket}/{name}: HTTP {answer.status}")
            async for chunk in answer.content.iter_chunked(CHUNK_BYTES):
                yield chunk

    async def exists(self, name: str) -> bool:
        async with self.session.get(self._object_url(name), headers=await self._headers()) as answer:
            if answer.status == 404:
                return False
            if answer.status >= 300:
                raise BlobStoreError(f"looking up gs://{self.bucket}/{name}: HTTP {answer.status}")
            return True

    async def delete(self, name: str) -> None:
        """Delete ``name`` (cloud.google.com/storage/docs/deleting-objects); one already gone is
        taken as deleted, so that a delete may be repeated."""
        async with self.session.delete(self._object_url(name), headers=await self._headers()) as answer:
            if answer.status >= 300 and answer.status != 404:
                raise BlobStoreError(f"deleting gs://{self.bucket}/{name}: HTTP {answer.status}")
