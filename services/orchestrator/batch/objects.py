"""OpenAI's file and batch objects (platform.openai.com/docs/api-reference/files/object and
/batch/object), made from the rows of batch_files and batches. Times are Unix seconds or null."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

BATCH_TIMES = (
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)


def unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def file_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": unix(row["created_at"]),
        "filename": row["filename"],
        "purpose": row["purpose"],
        # A file is validated before it is stored: it is never seen in any other status.
        "status": "processed",
    }


def batch_object(row: dict[str, Any]) -> dict[str, Any]:
    """``row``: a batches row with ``completed`` and ``failed``, its lines' counts."""
    return {
        "id": row["id"],
        "object": "batch",
        "endpoint": row["endpoint"],
        "errors": row["errors"],
        "input_file_id": row["input_file_id"],
        "completion_window": row["completion_window"],
        "status": row["status"],
        "output_file_id": row["output_file_id"],
        "error_file_id": row["error_file_id"],
        **{name: unix(row[name]) for name in BATCH_TIMES},
        "request_counts": {"total": row["request_total"], "completed": row["completed"], "failed": row["failed"]},
        "metadata": row["metadata"],
    }
