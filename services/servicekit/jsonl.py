"""How a batch input file splits into lines, the same in the gateway (which validates it) and
the orchestrator (which stores its lines): LF or CRLF endings, and any number of blank lines
at the end (OpenAI accepts a final newline). A blank line elsewhere is a line, and invalid."""

from __future__ import annotations

from collections.abc import Iterator


def jsonl_lines(data: bytes) -> Iterator[bytes]:
    """The file's lines in order, without their endings."""
    pieces = data.split(b"\n")
    while pieces and not pieces[-1].strip():
        pieces.pop()
    for piece in pieces:
        yield piece.removesuffix(b"\r")
