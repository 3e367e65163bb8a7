"""Reads token usage out of a chat completion as it passes through, without holding it back."""

from __future__ import annotations

import json

# More tokens than any one request of any model uses; far below the ledger's integer columns.
MAX_TOKENS = 10_000_000
# OpenAI's tokenizers average about four characters a token in English text.
CHARS_PER_TOKEN = 4


def estimate_tokens(body: dict, default_completion: int) -> int:
    """What a request may use, reserved against the quota while it runs: the completion limit
    it asks for (max_completion_tokens, or the older max_tokens), else ``default_completion``,
    plus its messages' length in tokens, roughly. The outcome settles the real figure."""
    limits = [body.get(key) for key in ("max_completion_tokens", "max_tokens")]
    given = [n for n in limits if isinstance(n, int) and not isinstance(n, bool) and n > 0]
    prompt = len(json.dumps(body["messages"])) // CHARS_PER_TOKEN
    return min((given[0] if given else default_completion) + prompt, MAX_TOKENS)


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
