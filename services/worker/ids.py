"""Ids the worker derives rather than draws, so that every retry of the same work names the same thing."""

from __future__ import annotations

import hashlib


def _digest(*parts: str | int) -> str:
    return hashlib.sha256(":".join(str(part) for part in parts).encode()).hexdigest()


def line_request_id(batch_id: str, line: int) -> str:
    """A line's request id: its ledger row's request_id and its id in the batch's files."""
    return f"batch_req_{_digest(batch_id, line)[:24]}"


def output_file_id(batch_id: str, kind: str) -> str:
    """The batch_output file of ``kind`` ("output" or "errors"): 'file-' + 24 hex, like uploads."""
    return f"file-{_digest(batch_id, kind)[:24]}"
