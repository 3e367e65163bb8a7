"""OpenAI's Batch API through the gateway and the orchestrator, with the official openai client:
real PostgreSQL, the Pub/Sub emulator and the Cloud Storage stand-in. A batch from upload to its
output file, cancelled, listed, and published whole; where a test needs a batch finished, it updates
the rows as a worker would (tests/services/batch_helpers.py)."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading

import aiohttp
import httpx
import openai
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from batch_helpers import (  # noqa: F401 - fixtures
    BUCKET,
    Query,
    batch_gateway,
    batch_orchestrator,
    batch_servers,
    client,
    counts,
    db,
    finish_as_a_worker,
    jsonl,
    new_user,
    pulled,
    queue,
    request_line,
)
from devtools.harness import Postgres, ServedIssuer, Server, free_port, wait_for
from devtools.pubsub_emulator import PubSubEmulator
from services.servicekit.blobs import BlobStore
from services.worker.finalize import Finalizer


def test_the_openai_client_uploads_creates_reads_back_and_downloads(
    batch_gateway: Server, issuer: ServedIssuer, db: Query, pubsub: PubSubEmulator, queue: tuple[str, str], gcs: Server
) -> None:
    user = new_user()
    api = client(batch_gateway, issuer, user)
    data = jsonl(*(request_line(f"req-{n}", f"question {n}", max_tokens=None) for n in range(25)))

    uploaded = api.files.create(file=("questions.jsonl", data), purpose="batch")
    assert (uploaded.object, uploaded.purpose, uploaded.status) == ("file", "batch", "processed")
    assert (uploaded.bytes, uploaded.filename) == (len(data), "questions.jsonl")
    assert api.files.retrieve(uploaded.id) == uploaded
    assert api.files.content(uploaded.id).content == data  # stored as uploaded
    assert gcs.app.state.objects[(BUCKET, f"inputs/{uploaded.id}.jsonl")].data == data

    batch = api.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"project": "tests"},
    )
    assert batch.status == "in_progress" and batch.in_progress_at is not None
    assert batch.id.startswith("batch_") and batch.input_file_id == uploaded.id
    assert counts(batch).model_dump() == {"total": 25, "completed": 0, "failed": 0}
    assert batch.metadata == {"project": "tests"}
    assert batch.expires_at is not None and batch.expires_at - batch.created_at == 24 * 3600

    # Every line is in the database, queued; one message per line.
    lines = db("SELECT line, custom_id, body, status FROM batch_lines WHERE batch_id = %s ORDER BY line", batch.id)
    assert [(r["line"], r["custom_id"], r["status"]) for r in lines] == [(n, f"req-{n}", "queued") for n in range(25)]
    # As an interactive request is sent on: without the fields sent as null, with stream's default.
    assert lines[7]["body"] == {
        "model": "standin-echo",
        "messages": [{"role": "user", "content": "question 7"}],
        "stream": False,
    }
    messages = pulled(pubsub, queue[1], batch.id, 25)
    assert sorted(m["line"] for m in messages) == list(range(25))
    assert {(m["kind"], m["batch_id"]) for m in messages} == {("line", batch.id)}

    assert api.batches.retrieve(batch.id).status == "in_progress"
    assert [b.id for b in api.batches.list()] == [batch.id]

    output_id = finish_as_a_worker(db, gcs.url, batch.id, user)
    done = api.batches.retrieve(batch.id)
    assert (done.status, done.output_file_id, done.error_file_id) == ("completed", output_id, None)
    assert counts(done).model_dump() == {"total": 25, "completed": 25, "failed": 0}
    assert done.completed_at is not None and done.finalizing_at is not None
    results = [json.loads(line) for line in api.files.content(output_id).content.splitlines()]
    assert [r["custom_id"] for r in results] == [f"req-{n}" for n in range(25)]
    assert api.files.retrieve(output_id).purpose == "batch_output"


def test_batches_are_listed_newest_first_a_page_at_a_time(batch_gateway: Server, issuer: ServedIssuer) -> None:
    api = client(batch_gateway, issuer, new_user())
    uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("only"))), purpose="batch")
    made = [
        api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h").id
        for _ in range(3)
    ]
    first = api.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    assert [b.id for b in api.batches.list(limit=2, after=first.data[-1].id).data] == made[:1]
    assert [b.id for b in api.batches.list(limit=2)] == made[::-1]  # the client pages through them all


def test_cancel_cancels_queued_lines_and_asks_a_worker_to_finish(
    batch_gateway: Server, issuer: ServedIssuer, db: Query, pubsub: PubSubEmulator, queue: tuple[str, str]
) -> None:
    api = client(batch_gateway, issuer, new_user())
    uploaded = api.files.create(file=("q.jsonl", jsonl(*(request_line(str(n)) for n in range(6)))), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    pulled(pubsub, queue[1], batch.id, 6)
    # A worker has one line running and one finished.
    db("UPDATE batch_lines SET status = 'running', claimed_by = 'w' WHERE batch_id = %s AND line = 0", batch.id)
    db("UPDATE batch_lines SET status = 'succeeded', finished_at = now() WHERE batch_id = %s AND line = 1", batch.id)

    # Concurrent cancels: every one answers the batch cancelling, and the lines are cancelled once.
    answers: list[object] = []
    threads = [threading.Thread(target=lambda: answers.append(api.batches.cancel(batch.id))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status for a in answers] == ["cancelling"] * 4  # type: ignore[attr-defined]
    assert len({a.cancelling_at for a in answers}) == 1  # type: ignore[attr-defined]
    statuses = db("SELECT line, status, error FROM batch_lines WHERE batch_id = %s ORDER BY line", batch.id)
    assert [r["status"] for r in statuses] == ["running", "succeeded"] + ["cancelled"] * 4
    assert statuses[2]["error"]["code"] == "batch_cancelled"
    checks = pulled(pubsub, queue[1], batch.id, 1)
    assert checks and {(m["kind"], m["batch_id"]) for m in checks} == {("check", batch.id)}

    # The worker finishes the batch; a finished batch cannot be cancelled.
    db("UPDATE batches SET status = 'cancelled', cancelled_at = now() WHERE id = %s", batch.id)
    assert api.batches.cancel(batch.id).status == "cancelled"
    db("UPDATE batches SET status = 'completed' WHERE id = %s", batch.id)
    with pytest.raises(openai.BadRequestError) as refused:
        api.batches.cancel(batch.id)
    assert "status 'completed'" in refused.value.message


def test_a_batch_whose_lines_cannot_be_published_stays_validating_for_the_sweeper(
    postgres: Postgres, upstream: Server, gcs: Server, queue: tuple[str, str], issuer: ServedIssuer, db: Query
) -> None:
    """Pub/Sub refuses (here: the topic is gone): the batch and all its lines are stored, and it
    stays validating, which the workers' sweeper publishes again after two minutes."""
    gone = "projects/test-project/topics/no-such-topic"
    with batch_servers(issuer, upstream, gcs, postgres.conninfo, gone, batch_create_timeout_seconds=10) as server:
        api = client(server, issuer, new_user())
        uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"), request_line("b"))), purpose="batch")
        batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert (batch.status, batch.in_progress_at) == ("validating", None)
    assert len(db("SELECT line FROM batch_lines WHERE batch_id = %s AND status = 'queued'", batch.id)) == 2


def test_with_the_database_away_an_upload_or_a_new_batch_is_503_to_retry(
    upstream: Server, gcs: Server, queue: tuple[str, str], issuer: ServedIssuer
) -> None:
    nowhere = f"host=127.0.0.1 port={free_port()} dbname=none user=none connect_timeout=1"
    with batch_servers(issuer, upstream, gcs, nowhere, queue[0]) as server:
        api = client(server, issuer, new_user())
        with pytest.raises(openai.InternalServerError) as away:
            api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
        assert away.value.status_code == 503 and away.value.response.headers["retry-after"] == "5"
        with pytest.raises(openai.InternalServerError):
            api.batches.create(
                input_file_id="file-" + "0" * 24, endpoint="/v1/chat/completions", completion_window="24h"
            )


def test_a_file_of_the_most_lines_is_validated_stored_and_published_whole(
    batch_gateway: Server, issuer: ServedIssuer, db: Query, pubsub: PubSubEmulator, queue: tuple[str, str]
) -> None:
    api = client(batch_gateway, issuer, new_user())
    lines = 50_000  # the default batch_max_lines
    uploaded = api.files.create(
        file=("big.jsonl", jsonl(*(request_line(f"r{n}") for n in range(lines)))), purpose="batch"
    )
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert (batch.status, counts(batch).total) == ("in_progress", lines)
    assert db("SELECT count(*) AS n FROM batch_lines WHERE batch_id = %s", batch.id) == [{"n": lines}]
    assert sorted(m["line"] for m in pulled(pubsub, queue[1], batch.id, lines, timeout=120)) == list(range(lines))


def test_the_workers_database_user_is_granted_what_it_needs_once_it_exists(
    postgres: Postgres, upstream: Server, gcs: Server, queue: tuple[str, str], issuer: ServedIssuer, db: Query
) -> None:
    """The orchestrator owns the tables, so it grants the workers' user (another IAM identity);
    a user created after the orchestrator started is granted before the next batch."""
    worker = f"batch-worker-{secrets.token_hex(3)}@test-project.iam"
    conninfo = postgres.conninfo
    with batch_servers(issuer, upstream, gcs, conninfo, queue[0], batch_worker_database_user=worker) as server:
        db(f'CREATE ROLE "{worker}"')  # after start-up: the grant there failed
        api = client(server, issuer, new_user())
        uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
        batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")

    def as_worker(statement: str, *params: object) -> int:
        with psycopg.connect(postgres.conninfo, autocommit=True) as conn, conn.transaction():
            conn.execute(f'SET LOCAL ROLE "{worker}"')
            return conn.execute(statement, params).rowcount

    claim = "UPDATE batch_lines SET status = 'running', claimed_by = 'w' WHERE batch_id = %s AND status = 'queued'"
    assert as_worker(claim, batch.id) == 1
    assert as_worker("SELECT status FROM batches WHERE id = %s", batch.id) == 1
    assert as_worker("SELECT 1 FROM usage_ledger LIMIT 1") >= 0
    # A line's reservation is settled, or dropped when the line is handed back.
    assert as_worker("UPDATE usage_ledger SET backend = backend WHERE false") == 0
    assert as_worker("DELETE FROM usage_ledger WHERE false") == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_worker("DELETE FROM batch_lines WHERE batch_id = %s", batch.id)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_worker("TRUNCATE usage_ledger")


def test_a_lines_body_is_stored_as_the_chat_route_sends_the_same_body(
    batch_gateway: Server, issuer: ServedIssuer, db: Query, upstream: Server
) -> None:
    """Values the chat route's schema coerces ("10" for max_tokens) are sent typed, by the chat
    route and by the workers alike, which send the body stored in batch_lines."""
    user = new_user()
    body = {
        "model": "standin-echo",
        "messages": [{"role": "user", "content": "typed?"}],
        "max_tokens": "10",
        "temperature": "0.5",
        "stream": "false",
        "seed": None,
    }
    api = client(batch_gateway, issuer, user)
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": body}
    uploaded = api.files.create(file=("q.jsonl", jsonl(line)), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    [stored] = db("SELECT body FROM batch_lines WHERE batch_id = %s", batch.id)

    chat = httpx.post(
        f"{batch_gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {issuer.token(user)}"}, json=body
    )
    assert chat.status_code == 200, chat.text
    sent = upstream.app.state.requests[-1]["body"]
    assert stored["body"] == sent
    assert (sent["max_tokens"], sent["temperature"], sent["stream"]) == (10, 0.5, False)


class StalledBlobs(BlobStore):
    """Cloud Storage taking its time: a write waits until ``release`` is set."""

    def __init__(self, release: threading.Event, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.release = release

    async def put(self, name: str, data: bytes, content_type: str = "application/jsonl") -> None:
        await asyncio.to_thread(self.release.wait, 30)
        await super().put(name, data, content_type)


def test_a_cancelled_batch_stays_cancelling_while_its_files_are_written_and_a_repeated_cancel_is_200(
    batch_gateway: Server, issuer: ServedIssuer, postgres: Postgres, gcs: Server, db: Query
) -> None:
    """OpenAI's 'finalizing' is a batch whose lines all ran: a cancelled batch goes from
    cancelling to cancelled, and a cancel sent again meanwhile answers the batch as it is."""
    api = client(batch_gateway, issuer, new_user())
    uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"), request_line("b"))), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    db(  # a worker answered line 0; the cancel closes line 1
        "UPDATE batch_lines SET status = 'succeeded', response = '{\"status_code\": 200, \"body\": {}}', "
        "finished_at = now() WHERE batch_id = %s AND line = 0",
        batch.id,
    )
    assert api.batches.cancel(batch.id).status == "cancelling"

    release = threading.Event()

    async def finish() -> None:
        async with (
            AsyncConnectionPool(postgres.conninfo, open=False, kwargs={"autocommit": True}) as pool,
            aiohttp.ClientSession() as session,
        ):
            await Finalizer(pool, StalledBlobs(release, BUCKET, session, None, gcs.url)).finish_if_done(batch.id)

    worker = threading.Thread(target=asyncio.run, args=(finish(),))
    worker.start()
    try:
        assert wait_for(lambda: db("SELECT finalizing_at FROM batches WHERE id = %s", batch.id)[0]["finalizing_at"])
        again = api.batches.cancel(batch.id)  # the files are being written
        assert again.status == "cancelling" and api.batches.retrieve(batch.id).status == "cancelling"
    finally:
        release.set()
        worker.join()
    done = api.batches.retrieve(batch.id)
    assert (done.status, done.completed_at) == ("cancelled", None) and done.cancelled_at
    assert counts(done).completed == 1
    assert api.batches.cancel(batch.id).status == "cancelled"
