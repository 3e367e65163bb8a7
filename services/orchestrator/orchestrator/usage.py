"""Reads token usage out of a chat completion as it passes through, without holding it back."""

from __future__ import annotations

import json


class UsageMeter:
    """Fed the raw bytes of a server-sent event stream, or a whole JSON body."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.chunks = 0
        self.done = False
        self._reported = False
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                continue
            self.chunks += 1
            self._read(payload)

    def read_body(self, body: bytes) -> None:
        self._read(body)
        self.done = True

    def _read(self, payload: bytes) -> None:
        try:
            usage = json.loads(payload).get("usage")
        except (ValueError, AttributeError):
            return
        if isinstance(usage, dict):
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
            self._reported = True

    @property
    def completion(self) -> int:
        """Reported completion tokens, or one per content chunk seen when the stream stopped early."""
        return self.completion_tokens if self._reported else max(self.completion_tokens, self.chunks)
