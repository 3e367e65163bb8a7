"""The one error a user's mistake turns into: it names the file, the key and what is allowed."""

from __future__ import annotations

from pathlib import Path


class ConfigError(Exception):
    def __init__(self, path: Path | None, problems: list[str]) -> None:
        self.lines = [f"{path}: {problem}" if path else problem for problem in problems]
        super().__init__("\n".join(self.lines))

    @classmethod
    def combine(cls, errors: list[ConfigError]) -> ConfigError:
        return cls(None, [line for err in errors for line in err.lines])
