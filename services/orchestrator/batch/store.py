"""Files and batches: their rows in the ledger's database, their objects in the bucket, their
messages on the topic. Every query names the user: another user's file or batch is not found.

Creating a batch stores it 'validating' with all its lines in one transaction, then publishes
one message per line, then moves it to 'in_progress'. Should the publisher fail or die between
the two, the batch stays 'validating', and the workers' sweeper publishes its lines again after
two minutes; a batch is never left with some lines stored and others not."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.modelcalls.ledger import Ledger
from services.orchestrator.batch.objects import batch_object, file_object, new_batch_id, new_file_id
from services.orchestrator.batch.queue import Publisher, check_message, line_message
from services.servicekit import logs
from services.servicekit.batch_lines import InvalidFile, stored_requests
from services.servicekit.blobs import BlobNotFound, BlobStore
from services.servicekit.jsonl import jsonl_lines

log = logging.getLogger("orchestrator.batch")
CANCELLED_LINE = {"code": "batch_cancelled", "message": "the batch was cancelled before this line ran"}
CANCELLABLE = ("validating", "in_progress")
# The counts of request_counts: OpenAI's failed counts the lines that will not be answered.
BATCH = """
    SELECT b.*, c.completed, c.failed FROM batches b, LATERAL (
        SELECT count(*) FILTER (WHERE status = 'succeeded') AS completed,
               count(*) FILTER (WHERE status IN ('failed', 'expired')) AS failed
        FROM batch_lines WHERE batch_id = b.id) c
"""


# What the batch workers' database user (another IAM identity) needs of the tables the
# orchestrator owns: claim, finish and charge lines, finalize batches, record output files,
# read the quota, and see that the migrations are applied.
WORKER_PRIVILEGES = {
    "batch_lines": "SELECT, UPDATE",
    "batches": "SELECT, UPDATE",
    "batch_files": "SELECT, INSERT",
    # UPDATE and DELETE: a line's reservation is settled, or dropped when the line is handed back.
    "usage_ledger": "SELECT, INSERT, UPDATE, DELETE",
    "schema_migrations": "SELECT",
}


class NotFound(LookupError):
    """No such file or batch of this user's."""


class Refused(ValueError):
    """The request cannot be done as asked (OpenAI's 400); ``param`` names the field at fault."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class BatchStore:
    def __init__(
        self,
        ledger: Ledger,
        blobs: BlobStore,
        publisher: Publisher,
        create_timeout: float,
        publish_timeout: float,
        worker_user: str | None = None,
    ) -> None:
        self.ledger, self.blobs, self.publisher = ledger, blobs, publisher
        self.create_timeout, self.publish_timeout = create_timeout, publish_timeout
        self.worker_user, self.granted = worker_user, worker_user is None

    async def grant_worker(self) -> None:
        """Give the workers' database user its privileges (WORKER_PRIVILEGES), once per start:
        the orchestrator owns the tables, so only it may. Tried at start-up and again before
        each new batch until it has worked (the workers' user may not exist yet)."""
        if self.granted or self.worker_user is None:
            return
        role = sql.Identifier(self.worker_user)

        async def grant(conn: psycopg.AsyncConnection) -> None:
            async with conn.transaction():
                for table, privileges in WORKER_PRIVILEGES.items():
                    await conn.execute(
                        sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privileges), sql.Identifier(table), role)
                    )

        await self.ledger.run(grant)
        self.granted = True
        logs.event(log, "batch privileges granted", grantee=self.worker_user)

    async def create_file(self, user_id: str, filename: str, data: bytes) -> dict[str, Any]:
        """Store an input file the gateway validated. The object is written before its row: an
        object whose row never came is unreachable, and the bucket's lifecycle rule removes it."""
        file_id = new_file_id()
        object_name = f"inputs/{file_id}.jsonl"
        await self.blobs.put(object_name, data)
        lines = sum(1 for _ in jsonl_lines(data))

        async def insert(conn: psycopg.AsyncConnection) -> dict[str, Any]:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "INSERT INTO batch_files (id, user_id, purpose, filename, bytes, line_count, object_name) "
                "VALUES (%s, %s, 'batch', %s, %s, %s, %s) RETURNING *",
                (file_id, user_id, filename, len(data), lines, object_name),
            )
            return _one(await cursor.fetchone())

        return file_object(await self.ledger.run(insert))

    async def file_row(self, user_id: str, file_id: str) -> dict[str, Any]:
        async def select(conn: psycopg.AsyncConnection) -> dict[str, Any] | None:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute("SELECT * FROM batch_files WHERE id = %s AND user_id = %s", (file_id, user_id))
            return await cursor.fetchone()

        row = await self.ledger.run(select)
        if row is None:
            raise NotFound(f"No such File object: {file_id}")
        return row

    async def get_file(self, user_id: str, file_id: str) -> dict[str, Any]:
        return file_object(await self.file_row(user_id, file_id))

    async def list_files(
        self, user_id: str, purpose: str | None, limit: int, ascending: bool, after: str | None
    ) -> dict[str, Any]:
        """Newest first unless ``ascending``, as OpenAI lists them; ``after``: the last id of the previous page."""
        direction = sql.SQL("ASC" if ascending else "DESC")
        query = sql.SQL(
            "SELECT * FROM batch_files WHERE user_id = %(user)s {purpose} {after} "
            "ORDER BY created_at {direction}, id {direction} LIMIT %(n)s"
        ).format(
            purpose=sql.SQL("AND purpose = %(purpose)s" if purpose else ""),
            after=sql.SQL(
                "AND (created_at, id) {} (SELECT created_at, id FROM batch_files WHERE id = %(after)s AND user_id = %(user)s)"
            ).format(sql.SQL(">" if ascending else "<"))
            if after
            else sql.SQL(""),
            direction=direction,
        )

        async def select(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(query, {"user": user_id, "purpose": purpose, "after": after, "n": limit + 1})
            return await cursor.fetchall()

        return list_object([file_object(row) for row in await self.ledger.run(select)], limit)

    async def delete_file(self, user_id: str, file_id: str) -> dict[str, Any]:
        """Its object, then its row: a delete that fails between the two is done again when
        repeated (an object already gone is deleted). Batches that name the file keep running
        (their lines are rows of their own); their input_file_id is then not found."""
        row = await self.file_row(user_id, file_id)
        await self.blobs.delete(row["object_name"])
        await self.ledger.run(
            lambda conn: conn.execute("DELETE FROM batch_files WHERE id = %s AND user_id = %s", (file_id, user_id))
        )
        logs.event(log, "file deleted", file_id=file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    async def create_batch(
        self, user_id: str, input_file_id: str, endpoint: str, window: str, metadata: dict[str, str] | None
    ) -> dict[str, Any]:
        try:
            await self.grant_worker()
        except psycopg.Error as err:  # a new batch waits for nobody: the workers' user may come later
            logs.event(log, "batch privileges not granted", logging.ERROR, grantee=self.worker_user, error=str(err))
        requests = await self._input_requests(user_id, input_file_id)
        batch_id = new_batch_id()

        async def insert(conn: psycopg.AsyncConnection) -> int:
            async with conn.transaction():
                # All the lines go in one statement, which may take longer than a request's.
                ms = int(self.create_timeout * 1000)
                await conn.execute(f"SET LOCAL statement_timeout = {ms}")
                await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {ms}")
                await conn.execute(
                    "INSERT INTO batches (id, user_id, input_file_id, endpoint, completion_window, metadata, "
                    "status, request_total, expires_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, 'validating', %s, now() + interval '24 hours')",
                    (
                        batch_id,
                        user_id,
                        input_file_id,
                        endpoint,
                        window,
                        Jsonb(metadata) if metadata else None,
                        len(requests),
                    ),
                )
                cursor = conn.cursor()
                async with cursor.copy("COPY batch_lines (batch_id, line, custom_id, body) FROM STDIN") as copy:
                    for number, (custom_id, body) in enumerate(requests):
                        await copy.write_row((batch_id, number, custom_id, body))
                return len(requests)

        total = await self.ledger.run(insert, self.create_timeout)
        logs.event(log, "batch created", batch_id=batch_id, lines=total)
        try:
            await self.publisher.publish([line_message(batch_id, n) for n in range(total)], self.publish_timeout)
            await self.ledger.run(
                lambda conn: conn.execute(
                    # Not over a cancel that came first.
                    "UPDATE batches SET status = 'in_progress', in_progress_at = now() "
                    "WHERE id = %s AND status = 'validating'",
                    (batch_id,),
                )
            )
        except Exception as err:  # Pub/Sub or the database away: the sweeper publishes it again
            logs.event(log, "batch left validating", logging.ERROR, batch_id=batch_id, error=repr(err)[:500])
        return await self.get_batch(user_id, batch_id)

    async def _input_requests(self, user_id: str, input_file_id: str) -> list[tuple[str, str]]:
        """The custom ids and bodies of a batch's input file."""
        source = await self.file_row(user_id, input_file_id)
        if source["purpose"] != "batch":
            raise Refused(f"file {input_file_id} is a batch's output, not an input (purpose 'batch')", "input_file_id")
        try:
            data = await self.blobs.get(source["object_name"])
        except BlobNotFound:  # deleted since (delete_file removes the object first)
            raise NotFound(f"No such File object: {input_file_id}") from None
        try:
            # Parsed again with the gateway's schema, to store each body as the chat route sends
            # it. A file stored before the gateway refused what it now refuses is refused here.
            # In a thread: 50,000 lines take the GIL for half a second, in slices.
            return await asyncio.to_thread(stored_requests, data)
        except InvalidFile as err:
            raise Refused(f"file {input_file_id} cannot be a batch's input: {err}", "input_file_id") from None

    async def get_batch(self, user_id: str, batch_id: str) -> dict[str, Any]:
        async def select(conn: psycopg.AsyncConnection) -> dict[str, Any] | None:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(BATCH + " WHERE b.id = %s AND b.user_id = %s", (batch_id, user_id))
            return await cursor.fetchone()

        row = await self.ledger.run(select)
        if row is None:
            raise NotFound(f"No batch found with id '{batch_id}'")
        return batch_object(row)

    async def list_batches(self, user_id: str, limit: int, after: str | None) -> dict[str, Any]:
        """Newest first, as OpenAI lists them; ``after`` is the last id of the previous page."""

        async def select(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
            cursor = conn.cursor(row_factory=dict_row)
            cursor_clause = (
                " AND (b.created_at, b.id) < (SELECT created_at, id FROM batches WHERE id = %(after)s AND user_id = %(user)s)"
                if after
                else ""
            )
            await cursor.execute(
                BATCH
                + " WHERE b.user_id = %(user)s"
                + cursor_clause
                + " ORDER BY b.created_at DESC, b.id DESC LIMIT %(n)s",
                {"user": user_id, "after": after, "n": limit + 1},
            )
            return await cursor.fetchall()

        return list_object([batch_object(row) for row in await self.ledger.run(select)], limit)

    async def cancel_batch(self, user_id: str, batch_id: str) -> dict[str, Any]:
        """validating or in_progress -> cancelling, its queued lines cancelled, in one transaction;
        then a check message, so that a worker finishes the batch once nothing of it runs.
        Cancelling a batch that is already cancelling or cancelled answers it as it is."""

        async def cancel(conn: psycopg.AsyncConnection) -> str | None:
            async with conn.transaction():
                # The row's lock orders concurrent cancels: the second sees 'cancelling'.
                cursor = await conn.execute(
                    "SELECT status FROM batches WHERE id = %s AND user_id = %s FOR UPDATE", (batch_id, user_id)
                )
                found = await cursor.fetchone()
                if found is None or found[0] not in CANCELLABLE:
                    return None if found is None else str(found[0])
                await conn.execute(
                    "UPDATE batches SET status = 'cancelling', cancelling_at = now() WHERE id = %s", (batch_id,)
                )
                await conn.execute(
                    "UPDATE batch_lines SET status = 'cancelled', error = %s, finished_at = now() "
                    "WHERE batch_id = %s AND status = 'queued'",
                    (Jsonb(CANCELLED_LINE), batch_id),
                )
                return "cancelling"

        status = await self.ledger.run(cancel, self.create_timeout)
        if status is None:
            raise NotFound(f"No batch found with id '{batch_id}'")
        if status not in ("cancelling", "cancelled"):
            raise Refused(f"Cannot cancel a batch with status '{status}'")
        if status == "cancelling":
            try:
                await self.publisher.publish([check_message(batch_id)], self.publish_timeout)
            except Exception as err:  # Pub/Sub away: the sweeper finishes cancelling batches too
                logs.event(log, "cancel check unpublished", logging.WARNING, batch_id=batch_id, error=repr(err)[:500])
        return await self.get_batch(user_id, batch_id)


def list_object(objects: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """OpenAI's page of a list: ``objects`` is one more than ``limit`` when there are more."""
    data = objects[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(objects) > limit,
    }


def _one(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return row
