"""Reads token usage out of a chat completion as it passes through, without holding it back."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from services.servicekit import logs

log = logging.getLogger("usage")

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


@dataclass(frozen=True)
class UsageBound:
    """The most tokens a request can use. A backend reporting more is at fault (a bug, or a lie):
    it is charged this bound, never the figure, so one request cannot spend a user's day."""

    prompt: int
    completion: int

    def clamp(self, prompt_tokens: int, completion_tokens: int) -> tuple[int, int, bool]:
        """The tokens to charge, and whether the figures reported exceeded the bound."""
        invalid = prompt_tokens > self.prompt or completion_tokens > self.completion
        return min(prompt_tokens, self.prompt), min(completion_tokens, self.completion), invalid

    def charge(self, prompt_tokens: int, completion_tokens: int, backend: str | None) -> tuple[int, int, bool]:
        """As ``clamp``, logging figures beyond the bound as ``backend``'s fault."""
        prompt, completion, invalid = self.clamp(prompt_tokens, completion_tokens)
        if invalid:
            logs.event(
                log,
                "backend reported usage beyond the request's bound",
                logging.ERROR,
                backend=backend,
                reported_prompt_tokens=prompt_tokens,
                reported_completion_tokens=completion_tokens,
                bound_prompt_tokens=self.prompt,
                bound_completion_tokens=self.completion,
            )
        return prompt, completion, invalid


# A prompt's non-text part (an image, audio) is tokenized from what it links to, not from its
# characters: allowed this many tokens each, more than models charge for one image.
NON_TEXT_PART_TOKENS = 10_000


def usage_bound(body: dict[str, Any], completion_limit: int) -> UsageBound:
    """``body``'s bound: its prompt can be no more tokens than the request has characters (as
    JSON, non-ASCII escaped: tokenizers make at most one token of a byte, and the JSON's keys and
    quotes outweigh a chat template's few tokens a message), plus an allowance per non-text part;
    its completion no more than its max_completion_tokens or max_tokens (else
    ``completion_limit``, the longest any served model writes), for each of its ``n`` choices."""
    text = json.dumps(body)
    parts = sum(text.count(f'"type": "{kind}"') for kind in ("image_url", "input_audio", "file"))
    choices = _positive(body.get("n")) or 1
    return UsageBound(len(text) + parts * NON_TEXT_PART_TOKENS, (_completion_limit(body) or completion_limit) * choices)


def _positive(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _completion_limit(body: dict[str, Any]) -> int | None:
    """The completion limit the request asks for: max_completion_tokens, or the older max_tokens."""
    return _positive(body.get("max_completion_tokens")) or _positive(body.get("max_tokens"))


def estimate_tokens(body: dict[str, Any], default_completion: int) -> int:
    """What a request may use, reserved against the quota while it runs: the completion limit
    it asks for (max_completion_tokens, or the older max_tokens), else ``default_completion``,
    plus its messages' length in tokens, roughly. The outcome settles the real figure."""
    prompt = len(json.dumps(body["messages"])) // CHARS_PER_TOKEN
    return min((_completion_limit(body) or default_completion) + prompt, MAX_TOKENS)


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
