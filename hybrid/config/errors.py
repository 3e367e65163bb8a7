"""The one error a user's mistake turns into: it names the file, the key and what is allowed."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path


class ConfigError(Exception):
    def __init__(self, path: Path | None, problems: list[str]) -> None:
        self.lines = [f"{path}: {problem}" if path else problem for problem in problems]
        super().__init__("\n".join(self.lines))

    @classmethod
    def combine(cls, errors: list[ConfigError]) -> ConfigError:
        return cls(None, [line for err in errors for line in err.lines])


def must(message: str) -> str:
    """A pydantic message ("Input should be ...", "List should have ...") in our voice: what the
    value must be or do, as every message of ours says it."""
    return re.sub(r"^\w+ should ", "must ", message.removeprefix("Value error, "))


def did_you_mean(given: str, known: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" for the nearest of ``known``, or nothing when none is near."""
    close = difflib.get_close_matches(given, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
