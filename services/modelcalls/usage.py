"""Reads token usage out of a chat completion as it passes through, without holding it back."""

from __future__ import annotations

import json
from typing import Any

# More tokens than any one request of any model uses; far below the ledger's integer columns.
MAX_TOKENS = 10_000_000
# OpenAI's tokenizers average about four characters a token in English text.
CHARS_PER_TOKEN = 4


class UsageInvalid(ValueError):
    """The backend reported usage that is not a token count: it cannot be metered."""


def token_count(value: object) -> int:
    """A reported usage figure as the ledger records it: a whole number (JSON's, or a string of
    digits), clamped to 0..MAX_TOKENS, so a negative figure never lowers a user's total and an
    absurd one cannot overflow the ledger's columns."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise UsageInvalid("usage is not a token count") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageInvalid(f"usage is not a token count ({type(value).__name__})")
    return min(max(value, 0), MAX_TOKENS)


def estimate_tokens(body: dict[str, Any], default_completion: int) -> int:
    """What a request may use, reserved against the quota while it runs: the completion limit
    it asks for (max_completion_tokens, or the older max_tokens), else ``default_completion``,
    plus its messages' length in tokens, roughly. The outcome settles the real figure."""
    limits = [body.get(key) for key in ("max_completion_tokens", "max_tokens")]
    given = [n for n in limits if isinstance(n, int) and not isinstance(n, bool) and n > 0]
    prompt = len(json.dumps(body["messages"])) // CHARS_PER_TOKEN
    return min((given[0] if given else default_completion) + prompt, MAX_TOKENS)


class UsageMeter:
    """Fed the raw bytes of a server-sent event stream, or a whole JSON body; raises
    UsageInvalid when the usage reported is not a token count."""

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
            self._read(payload)
            self.chunks += 1  # after the read: a chunk whose usage is refused is not counted

    def read_body(self, body: bytes) -> None:
        self._read(body)
        self.done = True

    def _read(self, payload: bytes) -> None:
        try:
            usage = json.loads(payload).get("usage")
        except (ValueError, AttributeError):
            return
        if isinstance(usage, dict):  # UsageInvalid if its figures are not token counts
            prompt, completion = token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens"))
            self.prompt_tokens, self.completion_tokens, self._reported = prompt, completion, True

    @property
    def completion(self) -> int:
        """Reported completion tokens, or one per content chunk seen when the stream stopped early."""
        return self.completion_tokens if self._reported else min(self.chunks, MAX_TOKENS)
