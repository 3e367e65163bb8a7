"""A batch's end: once no line of it is queued or running, its output and error files are
written to the bucket, recorded as batch_output files, and the batch takes its final status.

One worker sets the batch's finalizing_at (an UPDATE only one wins) and writes the files. The
batch shows 'finalizing' meanwhile, OpenAI's word for a batch whose lines all ran; a cancelled
batch stays 'cancelling' until it is 'cancelled' (so a cancel sent again meanwhile answers it as
it is). Every step may be repeated (the sweeper finalizes again a batch a worker that died left
mid-way): the objects are written once (BlobStore.put's precondition), the file rows have ids
derived from the batch's, and the final UPDATE applies only to a batch still being finalized.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import google.auth.exceptions
import psycopg
from psycopg_pool import AsyncConnectionPool

from services.servicekit import logs
from services.servicekit.blobs import BlobStore, BlobStoreError
from services.worker import metrics
from services.worker.ids import line_request_id, output_file_id

log = logging.getLogger("worker.finalize")
# Cloud Storage (or the token for it) may be away for a moment: the files are tried this often,
# this long apart, before the batch is left finalizing for the sweeper.
WRITE_ATTEMPTS = 3
WRITE_RETRY_SECONDS = 1.0

START = """
    UPDATE batches SET finalizing_at = now(),
        status = CASE WHEN status = 'cancelling' THEN 'cancelling' ELSE 'finalizing' END
    WHERE id = %(batch)s AND status IN ('validating', 'in_progress', 'cancelling') AND finalizing_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM batch_lines WHERE batch_id = %(batch)s AND status IN ('queued', 'running'))
    RETURNING id
"""
LINES = "SELECT line, custom_id, status, response, error FROM batch_lines WHERE batch_id = %s ORDER BY line"
RECORD_FILE = """
    INSERT INTO batch_files (id, user_id, purpose, filename, bytes, line_count, object_name)
    VALUES (%s, %s, 'batch_output', %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING
"""
# Cancelled if it was being cancelled; expired if time ran out on any line; else completed.
END = """
    UPDATE batches SET
        status = %(status)s::text, output_file_id = %(output)s, error_file_id = %(errors)s,
        completed_at = CASE WHEN %(status)s::text = 'completed' THEN now() END,
        cancelled_at = CASE WHEN %(status)s::text = 'cancelled' THEN now() END,
        expired_at = CASE WHEN %(status)s::text = 'expired' THEN now() END
    WHERE id = %(batch)s AND status IN ('finalizing', 'cancelling') AND finalizing_at IS NOT NULL
"""


def final_status(cancelling: bool, statuses: list[str]) -> str:
    if cancelling:
        return "cancelled"
    return "expired" if "expired" in statuses else "completed"


def result_line(batch_id: str, row: tuple[Any, ...]) -> bytes:
    """A line of output.jsonl or errors.jsonl, in OpenAI's batch output shape."""
    line, custom_id, _, response, error = row
    record = {"id": line_request_id(batch_id, line), "custom_id": custom_id, "response": response, "error": error}
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


class Finalizer:
    def __init__(self, pool: AsyncConnectionPool, blobs: BlobStore) -> None:
        self.pool, self.blobs = pool, blobs

    async def finish_if_done(self, batch_id: str) -> None:
        """Finalize the batch if nothing of it is left to run and no other worker has begun to.
        Should the database fail meanwhile, the sweeper finishes the batch later."""
        try:
            async with self.pool.connection() as conn:
                won = await (await conn.execute(START, {"batch": batch_id})).fetchone()
            if won:
                await self.finalize(batch_id)
        except (psycopg.Error, OSError) as err:  # OSError: TimeoutError too
            logs.event(log, "finalization deferred", logging.WARNING, batch_id=batch_id, error=type(err).__name__)

    async def finalize(self, batch_id: str) -> bool:
        """Write the files and end a batch being finalized; False (it stays as it is, for the
        sweeper) if Cloud Storage would not take the files."""
        with metrics.FINALIZE.time():
            return await self._finalize(batch_id)

    async def _finalize(self, batch_id: str) -> bool:
        async with self.pool.connection() as conn:
            batch = await (
                await conn.execute("SELECT user_id, cancelling_at IS NOT NULL FROM batches WHERE id = %s", (batch_id,))
            ).fetchone()
            rows = await (await conn.execute(LINES, (batch_id,))).fetchall()
        if batch is None:
            return False
        user_id, cancelling = batch
        succeeded = [row for row in rows if row[2] == "succeeded"]
        unsucceeded = [row for row in rows if row[2] != "succeeded"]
        files: dict[str, str | None] = {}
        records = []
        for kind, chosen in (("output", succeeded), ("errors", unsucceeded)):
            if not chosen:  # OpenAI's batch has no such file then: its id stays null
                files[kind] = None
                continue
            data = b"".join(result_line(batch_id, row) for row in chosen)
            name = f"outputs/{batch_id}/{kind}.jsonl"
            if not await self._write(name, data, batch_id):
                return False
            files[kind] = output_file_id(batch_id, kind)
            records.append((files[kind], user_id, f"{batch_id}_{kind}.jsonl", len(data), len(chosen), name))
        status = final_status(cancelling, [row[2] for row in rows])
        async with self.pool.connection() as conn, conn.transaction():
            for record in records:
                await conn.execute(RECORD_FILE, record)
            await conn.execute(
                END, {"status": status, "output": files["output"], "errors": files["errors"], "batch": batch_id}
            )
        logs.event(
            log,
            "batch finalized",
            batch_id=batch_id,
            status=status,
            succeeded=len(succeeded),
            unsucceeded=len(unsucceeded),
        )
        return True

    async def _write(self, name: str, data: bytes, batch_id: str) -> bool:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await self.blobs.put(name, data)
                return True
            except (BlobStoreError, aiohttp.ClientError, TimeoutError, google.auth.exceptions.GoogleAuthError) as err:
                logs.event(
                    log, "batch file not written", logging.WARNING, batch_id=batch_id, attempt=attempt, error=str(err)
                )
                if attempt < WRITE_ATTEMPTS:
                    await asyncio.sleep(WRITE_RETRY_SECONDS * attempt)
        return False
