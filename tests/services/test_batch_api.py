"""OpenAI's Batch API through the gateway and the orchestrator, with the official openai client:
real PostgreSQL, the Pub/Sub emulator and the Cloud Storage stand-in. The workers are not here
(services/worker): where a test needs a batch finished, it updates the rows as a worker would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import socket
import threading
import time

import aiohttp
import httpx
import openai
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from devtools.harness import Server, free_port, gateway_settings, orchestrator_settings, wait_for
from servers import gateway_server
from services.gateway.app import create_app as create_gateway
from services.orchestrator.app import create_app as create_orchestrator
from services.servicekit.blobs import BlobStore
from services.worker.finalize import Finalizer

BUCKET = "test-project-test-batch"


def request_line(custom_id: str, content: str = "hello", **body: object) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "standin-echo", "messages": [{"role": "user", "content": content}], **body},
    }


def jsonl(*lines: dict, ending: bytes = b"\n") -> bytes:
    return b"".join(json.dumps(line).encode() + ending for line in lines)


@pytest.fixture(scope="module")
def queue(pubsub):
    """The batch topic, with a subscription that the tests read the published messages from."""
    suffix = secrets.token_hex(4)
    topic = pubsub.create_topic(f"batch-lines-{suffix}")
    probe = f"batch-probe-{suffix}"
    pubsub.create_subscription(probe, f"batch-lines-{suffix}")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in pubsub.environment.items():
            patch.setenv(name, value)
        yield topic, probe


@pytest.fixture(scope="module")
def batch_orchestrator(postgres, upstream, gcs, queue):
    topic, _ = queue
    settings = orchestrator_settings(
        upstream.url, batch_bucket=BUCKET, batch_topic=topic, storage_url=gcs.url, storage_auth="none"
    )
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo)) as server:
        yield server


@pytest.fixture(scope="module")
def batch_gateway(issuer, batch_orchestrator):
    with gateway_server(issuer, batch_orchestrator.url, rate_limit_per_minute=6000, rate_limit_burst=1000) as server:
        yield server


@pytest.fixture(scope="module")
def small_gateway(issuer, batch_orchestrator):
    """Small bounds, so that a file can pass them by a little."""
    with gateway_server(
        issuer,
        batch_orchestrator.url,
        rate_limit_per_minute=6000,
        rate_limit_burst=1000,
        batch_max_lines=3,
        batch_max_file_bytes=4096,
        max_body_bytes=1024,
    ) as server:
        yield server


def client(gateway, issuer, user: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=issuer.token(user), max_retries=0)


def new_user() -> str:
    return f"batch-user-{secrets.token_hex(4)}"


@pytest.fixture
def db(postgres):
    def query(sql: str, *params: object) -> list[dict]:
        with psycopg.connect(postgres.conninfo, row_factory=dict_row, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    return query


def pulled(pubsub, subscription: str, batch_id: str, count: int, timeout: float = 20) -> list[dict]:
    """The data of the batch's messages on the subscription: waits for ``count``, then takes any more."""
    got: list[dict] = []

    def take() -> bool:
        for message in pubsub.pull(subscription, 1000):
            data = json.loads(base64.b64decode(message["data"]))
            if data["batch_id"] == batch_id:
                got.append(data)
        return len(got) >= count

    wait_for(take, timeout=timeout)
    take()
    return got


def upload(gateway, token: str, data: bytes, purpose: str = "batch", filename: str = "in.jsonl") -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/files",
        headers={"authorization": f"Bearer {token}"},
        files={"file": (filename, data, "application/jsonl")},
        data={"purpose": purpose},
        timeout=30,
    )


def finish_as_a_worker(db, gcs_url: str, batch_id: str, user: str) -> str:
    """What the workers do when every line has succeeded: the output file, and the batch completed."""
    lines = db("SELECT line, custom_id FROM batch_lines WHERE batch_id = %s ORDER BY line", batch_id)
    output = b"".join(
        json.dumps(
            {
                "id": f"batch_req_{batch_id}_{line['line']}",
                "custom_id": line["custom_id"],
                "response": {"status_code": 200, "request_id": "r", "body": {"object": "chat.completion"}},
                "error": None,
            }
        ).encode()
        + b"\n"
        for line in lines
    )
    name = f"outputs/{batch_id}/output.jsonl"
    httpx.post(
        f"{gcs_url}/upload/storage/v1/b/{BUCKET}/o",
        params={"uploadType": "media", "name": name, "ifGenerationMatch": "0"},
        content=output,
    ).raise_for_status()
    file_id = "file-" + secrets.token_hex(12)
    db(
        "UPDATE batch_lines SET status = 'succeeded', response = '{\"status_code\": 200}', finished_at = now() "
        "WHERE batch_id = %s",
        batch_id,
    )
    db(
        "INSERT INTO batch_files (id, user_id, purpose, filename, bytes, line_count, object_name) "
        "VALUES (%s, %s, 'batch_output', %s, %s, %s, %s)",
        file_id,
        user,
        f"{batch_id}_output.jsonl",
        len(output),
        len(lines),
        name,
    )
    db(
        "UPDATE batches SET status = 'completed', finalizing_at = now(), completed_at = now(), output_file_id = %s "
        "WHERE id = %s",
        file_id,
        batch_id,
    )
    return file_id


def test_the_openai_client_uploads_creates_reads_back_and_downloads(batch_gateway, issuer, db, pubsub, queue, gcs):
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
    assert batch.request_counts.model_dump() == {"total": 25, "completed": 0, "failed": 0}
    assert batch.metadata == {"project": "tests"}
    assert batch.expires_at - batch.created_at == 24 * 3600

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
    assert done.request_counts.model_dump() == {"total": 25, "completed": 25, "failed": 0}
    assert done.completed_at is not None and done.finalizing_at is not None
    results = [json.loads(line) for line in api.files.content(output_id).content.splitlines()]
    assert [r["custom_id"] for r in results] == [f"req-{n}" for n in range(25)]
    assert api.files.retrieve(output_id).purpose == "batch_output"


def test_batches_are_listed_newest_first_a_page_at_a_time(batch_gateway, issuer):
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


MALFORMED = {
    "bad JSON on line 3": (
        jsonl(request_line("a"), request_line("b")) + b'{"custom_id": "c", \n',
        "line 3: Invalid JSON",
    ),
    "no custom_id": (
        jsonl(request_line("a"), {k: v for k, v in request_line("b").items() if k != "custom_id"}),
        "line 2: custom_id: Field required",
    ),
    "a duplicate custom_id": (
        jsonl(request_line("a"), request_line("b"), request_line("a")),
        "line 3: custom_id: the same as line 1's",
    ),
    "a body the chat route refuses": (
        jsonl(request_line("a", temperature=3)),
        "line 1: body.temperature: Input should be less than or equal to 2",
    ),
    "an empty messages list": (
        jsonl({**request_line("a"), "body": {"model": "standin-echo", "messages": []}}),
        "line 1: body.messages: List should have at least 1 item",
    ),
    "a streaming line": (jsonl(request_line("a"), request_line("b", stream=True)), "line 2: body.stream"),
    "another endpoint": (jsonl({**request_line("a"), "url": "/v1/embeddings"}), "line 1: url: Input should be"),
    "GET": (jsonl({**request_line("a"), "method": "GET"}), "line 1: method: Input should be 'POST'"),
    "a line that is not an object": (jsonl(request_line("a")) + b"[1, 2]\n", "line 2: Input should be an object"),
    "an empty custom_id": (jsonl(request_line("")), "line 1: custom_id: String should have at least 1 character"),
    "too many lines": (jsonl(*(request_line(str(n)) for n in range(4))), "more than 3 lines"),
    "a line longer than a chat request may be": (
        jsonl(request_line("a", "x" * 1100)),
        "line 1: longer than 1024 bytes",
    ),
    "bytes that are not UTF-8": (jsonl(request_line("a")) + b'{"custom_id": "\xff\xfe"}\n', "line 2: not UTF-8"),
    "a blank line inside": (jsonl(request_line("a")) + b"\n" + jsonl(request_line("b")), "line 2: empty"),
    "an unknown field": (jsonl({**request_line("a"), "priority": 1}), "line 1: priority: Extra inputs"),
    "an empty file": (b"", "the file has no lines"),
    "only blank lines": (b"\n\r\n\n", "the file has no lines"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_file_is_refused_naming_the_line_and_nothing_is_stored(small_gateway, issuer, db, gcs, case):
    data, message = MALFORMED[case]
    user = new_user()
    objects_before = len(gcs.app.state.objects)
    with pytest.raises(openai.BadRequestError) as refused:
        client(small_gateway, issuer, user).files.create(file=("bad.jsonl", data), purpose="batch")
    assert message in refused.value.message, refused.value.message
    assert refused.value.code == "invalid_file"
    assert db("SELECT id FROM batch_files WHERE user_id = %s", user) == []
    assert len(gcs.app.state.objects) == objects_before


def test_a_file_over_the_size_bound_is_413_and_not_stored(small_gateway, issuer, db, gcs):
    user = new_user()
    objects_before = len(gcs.app.state.objects)
    big = jsonl(request_line("a", "x" * 600), request_line("b", "y" * 600), request_line("c", "z" * 600))
    big += b" " * (4097 - len(big))  # trailing blanks still count toward the file's size
    answer = upload(small_gateway, issuer.token(user), big)
    assert answer.status_code == 413 and "4096 bytes" in answer.json()["error"]["message"]
    endless = upload(small_gateway, issuer.token(user), b"x" * 100_000)  # beyond the envelope: not even parsed
    assert endless.status_code == 413
    assert db("SELECT id FROM batch_files WHERE user_id = %s", user) == []
    assert len(gcs.app.state.objects) == objects_before


def test_crlf_endings_and_trailing_blank_lines_are_accepted(small_gateway, issuer, db):
    user = new_user()
    api = client(small_gateway, issuer, user)
    data = jsonl(request_line("a"), request_line("b"), ending=b"\r\n") + b"\r\n\n"
    uploaded = api.files.create(file=("crlf.jsonl", data), purpose="batch")
    assert uploaded.bytes == len(data)
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.request_counts.total == 2
    assert [
        r["custom_id"] for r in db("SELECT custom_id FROM batch_lines WHERE batch_id = %s ORDER BY line", batch.id)
    ] == ["a", "b"]


@pytest.mark.parametrize(
    ("send", "message"),
    [
        (lambda url, auth: httpx.post(url, headers=auth, json={"purpose": "batch"}), "multipart/form-data"),
        (lambda url, auth: httpx.post(url, headers=auth, files={"purpose": (None, "batch")}), "no file"),
        (
            lambda url, auth: httpx.post(
                url, headers=auth, files={"file": ("a.jsonl", b"{}")}, data={"purpose": "fine-tune"}
            ),
            "purpose: only 'batch'",
        ),
        (lambda url, auth: httpx.post(url, headers=auth, files={"file": ("a.jsonl", b"{}")}), "purpose: only 'batch'"),
        (
            lambda url, auth: httpx.post(
                url, headers={**auth, "content-type": "multipart/form-data; boundary=xyz"}, content=b"--xyz\r\ngarbage"
            ),
            "",
        ),
    ],
    ids=["json body", "no file", "another purpose", "no purpose", "broken multipart"],
)
def test_an_upload_that_is_not_a_batch_file_is_refused(small_gateway, issuer, send, message):
    answer = send(f"{small_gateway.url}/v1/files", {"authorization": f"Bearer {issuer.token(new_user())}"})
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]["message"]


def test_the_batch_routes_need_a_valid_token(batch_gateway):
    bad = {"authorization": "Bearer nonsense"}
    for method, path in [
        ("POST", "/v1/files"),
        ("GET", "/v1/files"),
        ("GET", "/v1/files/file-000000000000000000000000"),
        ("DELETE", "/v1/files/file-000000000000000000000000"),
        ("GET", "/v1/files/file-000000000000000000000000/content"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches"),
        ("GET", "/v1/batches/batch_000000000000000000000000"),
        ("POST", "/v1/batches/batch_000000000000000000000000/cancel"),
    ]:
        assert httpx.request(method, f"{batch_gateway.url}{path}", headers=bad).status_code == 401, path


def test_a_batch_request_is_checked_before_it_is_forwarded(batch_gateway, issuer):
    api = client(batch_gateway, issuer, new_user())
    uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
    for wrong, param in [
        ({"endpoint": "/v1/embeddings"}, "endpoint"),
        ({"completion_window": "1h"}, "completion_window"),
        ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata"),
        ({"input_file_id": "../../admin"}, "input_file_id"),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            api.batches.create(
                **{
                    "input_file_id": uploaded.id,
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                    **wrong,
                }
            )
        assert refused.value.param == param


def test_one_user_cannot_see_use_or_cancel_another_users_file_or_batch(batch_gateway, issuer, db):
    alice, bob = client(batch_gateway, issuer, new_user()), client(batch_gateway, issuer, new_user())
    uploaded = alice.files.create(file=("mine.jsonl", jsonl(request_line("a"))), purpose="batch")
    batch = alice.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    attempts = [
        lambda: bob.files.retrieve(uploaded.id),
        lambda: bob.files.content(uploaded.id),
        lambda: bob.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"),
        lambda: bob.batches.retrieve(batch.id),
        lambda: bob.batches.cancel(batch.id),
        lambda: bob.files.retrieve("file-" + "0" * 24),  # the same answer as for an unknown id
        lambda: bob.batches.retrieve("not-an-id"),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert list(bob.batches.list()) == []
    assert alice.batches.retrieve(batch.id).status == "in_progress"  # bob's cancel did nothing
    assert {r["status"] for r in db("SELECT status FROM batch_lines WHERE batch_id = %s", batch.id)} == {"queued"}


def test_cancel_cancels_queued_lines_and_asks_a_worker_to_finish(batch_gateway, issuer, db, pubsub, queue):
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
    postgres, upstream, gcs, queue, issuer, db
):
    """Pub/Sub refuses (here: the topic is gone): the batch and all its lines are stored, and it
    stays validating, which the workers' sweeper publishes again after two minutes."""
    settings = orchestrator_settings(
        upstream.url,
        batch_bucket=BUCKET,
        batch_topic="projects/test-project/topics/no-such-topic",
        storage_url=gcs.url,
        storage_auth="none",
        batch_create_timeout_seconds=10,
    )
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo)) as orchestrator:
        gateway = create_gateway(gateway_settings(issuer, orchestrator.url, rate_limit_burst=100))
        with Server(gateway) as server:
            api = client(server, issuer, new_user())
            uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"), request_line("b"))), purpose="batch")
            batch = api.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
    assert (batch.status, batch.in_progress_at) == ("validating", None)
    assert len(db("SELECT line FROM batch_lines WHERE batch_id = %s AND status = 'queued'", batch.id)) == 2


def test_without_a_bucket_the_batch_routes_say_batches_are_not_enabled(gateway, issuer):
    api = client(gateway, issuer, new_user())
    with pytest.raises(openai.NotFoundError) as absent:
        api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
    assert absent.value.body == {
        "message": "batches are not enabled",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }
    with pytest.raises(openai.NotFoundError):
        api.batches.retrieve("batch_" + "0" * 24)


def test_the_openapi_document_describes_the_batch_routes(batch_gateway):
    document = httpx.get(f"{batch_gateway.url}/openapi.json").json()
    assert {"/v1/files", "/v1/files/{file_id}/content", "/v1/batches", "/v1/batches/{batch_id}/cancel"} <= set(
        document["paths"]
    )
    assert "BatchCreateRequest" in document["components"]["schemas"]


def test_with_the_database_away_an_upload_or_a_new_batch_is_503_to_retry(upstream, gcs, queue, issuer):
    topic, _ = queue
    settings = orchestrator_settings(
        upstream.url, batch_bucket=BUCKET, batch_topic=topic, storage_url=gcs.url, storage_auth="none"
    )
    nowhere = f"host=127.0.0.1 port={free_port()} dbname=none user=none connect_timeout=1"
    with Server(create_orchestrator(settings, conninfo=nowhere)) as orchestrator:
        gateway = create_gateway(gateway_settings(issuer, orchestrator.url, rate_limit_burst=100))
        with Server(gateway) as server:
            api = client(server, issuer, new_user())
            with pytest.raises(openai.InternalServerError) as away:
                api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
            assert away.value.status_code == 503 and away.value.response.headers["retry-after"] == "5"
            with pytest.raises(openai.InternalServerError):
                api.batches.create(
                    input_file_id="file-" + "0" * 24, endpoint="/v1/chat/completions", completion_window="24h"
                )


def test_a_file_of_the_most_lines_is_validated_stored_and_published_whole(batch_gateway, issuer, db, pubsub, queue):
    api = client(batch_gateway, issuer, new_user())
    lines = 50_000  # the default batch_max_lines
    uploaded = api.files.create(
        file=("big.jsonl", jsonl(*(request_line(f"r{n}") for n in range(lines)))), purpose="batch"
    )
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert (batch.status, batch.request_counts.total) == ("in_progress", lines)
    assert db("SELECT count(*) AS n FROM batch_lines WHERE batch_id = %s", batch.id) == [{"n": lines}]
    assert sorted(m["line"] for m in pulled(pubsub, queue[1], batch.id, lines, timeout=120)) == list(range(lines))


def multipart_upload(
    data: bytes, boundary: str = "batchboundary", filename: str = "slow.jsonl"
) -> tuple[dict[str, str], bytes]:
    """The headers and body of an upload of ``data``, made by hand to send it slowly."""
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return {"content-type": f"multipart/form-data; boundary={boundary}"}, body


def slowly(body: bytes, seconds: float = 2):
    """The body in four pieces, the first after seconds / 4 and the last after ``seconds``."""
    piece = len(body) // 4 + 1
    for start in range(0, len(body), piece):
        time.sleep(seconds / 4)
        yield body[start : start + piece]


def test_an_upload_has_its_own_deadline_for_the_body(issuer, batch_orchestrator):
    """A batch file may take longer to arrive than a chat request's body may (body_timeout_seconds):
    a second more for every batch_upload_min_bytes_per_second bytes that arrived."""
    settings = gateway_settings(
        issuer,
        batch_orchestrator.url,
        body_timeout_seconds=1,
        batch_upload_min_bytes_per_second=100,
        batch_upload_timeout_seconds=30,
        rate_limit_burst=100,
    )
    headers, multipart = multipart_upload(jsonl(request_line("slow")))
    with Server(create_gateway(settings)) as server:
        auth = {"authorization": f"Bearer {issuer.token(new_user())}"}
        upload_answer = httpx.post(
            f"{server.url}/v1/files", headers={**auth, **headers}, content=slowly(multipart), timeout=30
        )
        chat_answer = httpx.post(
            f"{server.url}/v1/chat/completions",
            headers={**auth, "content-type": "application/json"},
            content=slowly(json.dumps(request_line("x")["body"]).encode()),
            timeout=30,
        )
    assert upload_answer.status_code == 200 and upload_answer.json()["filename"] == "slow.jsonl"
    assert chat_answer.status_code == 408


def test_uploads_beyond_the_concurrent_bound_are_503_to_retry(issuer, batch_orchestrator):
    settings = gateway_settings(issuer, batch_orchestrator.url, batch_concurrent_uploads=1, rate_limit_burst=100)
    headers, multipart = multipart_upload(jsonl(request_line("slow")))
    with Server(create_gateway(settings)) as server:
        auth = {"authorization": f"Bearer {issuer.token(new_user())}", **headers}
        answers: list[httpx.Response] = []
        slow = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{server.url}/v1/files", headers=auth, content=slowly(multipart, 3), timeout=30)
            )
        )
        slow.start()
        time.sleep(1)  # the slow upload holds the one place
        busy = httpx.post(f"{server.url}/v1/files", headers=auth, content=multipart, timeout=30)
        slow.join()
        after = httpx.post(f"{server.url}/v1/files", headers=auth, content=multipart, timeout=30)
    assert (busy.status_code, busy.headers["retry-after"]) == (503, "5")
    assert [a.status_code for a in answers] == [200] and after.status_code == 200


def test_the_workers_database_user_is_granted_what_it_needs_once_it_exists(postgres, upstream, gcs, queue, issuer, db):
    """The orchestrator owns the tables, so it grants the workers' user (another IAM identity);
    a user created after the orchestrator started is granted before the next batch."""
    worker = f"batch-worker-{secrets.token_hex(3)}@test-project.iam"
    settings = orchestrator_settings(
        upstream.url,
        batch_bucket=BUCKET,
        batch_topic=queue[0],
        storage_url=gcs.url,
        storage_auth="none",
        batch_worker_database_user=worker,
    )
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo)) as orchestrator:
        db(f'CREATE ROLE "{worker}"')  # after start-up: the grant there failed
        gateway = create_gateway(gateway_settings(issuer, orchestrator.url, rate_limit_burst=100))
        with Server(gateway) as server:
            api = client(server, issuer, new_user())
            uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
            batch = api.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )

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


NUL = "\u0000"
NUL_IN_A_LINE = {
    "the content": (jsonl(request_line("a"), request_line("b", f"x{NUL}y")), "line 2: body.messages[0].content"),
    "the custom_id": (jsonl(request_line(f"a{NUL}")), "line 1: custom_id"),
    "a stop string": (jsonl(request_line("a", stop=["ok", NUL])), "line 1: body.stop[1]"),
    "the user": (jsonl(request_line("a", user=NUL)), "line 1: body.user"),
}


@pytest.mark.parametrize("case", NUL_IN_A_LINE)
def test_a_nul_character_in_a_line_is_refused_at_upload_naming_the_line_and_field(batch_gateway, issuer, db, case):
    """PostgreSQL's text and jsonb cannot hold NUL: a line with one could never become a batch."""
    data, where = NUL_IN_A_LINE[case]
    user = new_user()
    with pytest.raises(openai.BadRequestError) as refused:
        client(batch_gateway, issuer, user).files.create(file=("nul.jsonl", data), purpose="batch")
    assert f"{where}: must not contain the NUL character" in refused.value.message, refused.value.message
    assert refused.value.code == "invalid_file"
    assert db("SELECT id FROM batch_files WHERE user_id = %s", user) == []


def test_a_nul_character_in_the_file_name_is_refused(batch_gateway, issuer, db):
    user = new_user()
    headers, body = multipart_upload(jsonl(request_line("a")), filename=f"in{NUL}.jsonl")
    answer = httpx.post(
        f"{batch_gateway.url}/v1/files",
        headers={"authorization": f"Bearer {issuer.token(user)}", **headers},
        content=body,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"].startswith("file: its name must not contain the NUL character")
    assert db("SELECT id FROM batch_files WHERE user_id = %s", user) == []


def test_a_nul_character_in_a_batchs_metadata_is_refused(batch_gateway, issuer, db):
    user = new_user()
    api = client(batch_gateway, issuer, user)
    uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
    for metadata, param in [({"k": f"v{NUL}"}, "metadata.k"), ({f"k{NUL}": "v"}, f"metadata.k{NUL}.[key]")]:
        with pytest.raises(openai.BadRequestError) as refused:
            api.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata=metadata
            )
        assert "must not contain the NUL character" in refused.value.message
        assert refused.value.param == param
    assert db("SELECT id FROM batches WHERE user_id = %s", user) == []


def test_a_stored_file_with_a_nul_character_is_refused_at_batch_creation_naming_the_line(
    batch_gateway, batch_orchestrator, issuer, db
):
    """A file stored before the gateway refused NUL: its batch is a 400 naming the line, never a 500."""
    user = new_user()
    stored = httpx.post(
        f"{batch_orchestrator.url}/v1/files",
        params={"purpose": "batch", "filename": "old.jsonl"},
        headers={"x-user-id": user, "content-type": "application/jsonl"},
        content=jsonl(request_line("a"), request_line(f"b{NUL}")),
    )
    assert stored.status_code == 200, stored.text
    with pytest.raises(openai.BadRequestError) as refused:
        client(batch_gateway, issuer, user).batches.create(
            input_file_id=stored.json()["id"], endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert "line 2: custom_id: must not contain the NUL character" in refused.value.message
    assert refused.value.param == "input_file_id"
    assert db("SELECT id FROM batches WHERE user_id = %s", user) == []


def test_a_lines_body_is_stored_as_the_chat_route_sends_the_same_body(batch_gateway, issuer, db, upstream):
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


def test_a_token_whose_subject_holds_a_nul_character_is_refused_on_every_route(batch_gateway, issuer):
    """The subject is the user id the ledger and the batch tables store as text, and the
    orchestrator is sent in a header."""
    for subject in (f"user{NUL}", "user\nx-other: 1"):
        auth = {"authorization": f"Bearer {issuer.token(subject)}"}
        chat = httpx.post(f"{batch_gateway.url}/v1/chat/completions", headers=auth, json=request_line("a")["body"])
        listing = httpx.get(f"{batch_gateway.url}/v1/batches", headers=auth)
        assert (chat.status_code, listing.status_code) == (401, 401), (chat.text, listing.text)


class StalledBlobs(BlobStore):
    """Cloud Storage taking its time: a write waits until ``release`` is set."""

    def __init__(self, release: threading.Event, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.release = release

    async def put(self, name: str, data: bytes, content_type: str = "application/jsonl") -> None:
        await asyncio.to_thread(self.release.wait, 30)
        await super().put(name, data, content_type)


def test_a_cancelled_batch_stays_cancelling_while_its_files_are_written_and_a_repeated_cancel_is_200(
    batch_gateway, issuer, postgres, gcs, db
):
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
    assert done.request_counts.completed == 1
    assert api.batches.cancel(batch.id).status == "cancelled"


def test_the_openai_client_lists_a_users_files_newest_first_by_purpose_a_page_at_a_time(batch_gateway, issuer, db, gcs):
    user = new_user()
    api = client(batch_gateway, issuer, user)
    inputs = [api.files.create(file=(f"q{n}.jsonl", jsonl(request_line("a"))), purpose="batch").id for n in range(3)]
    batch = api.batches.create(input_file_id=inputs[0], endpoint="/v1/chat/completions", completion_window="24h")
    output = finish_as_a_worker(db, gcs.url, batch.id, user)

    newest_first = [inputs[2], inputs[1], inputs[0]]
    assert [f.id for f in api.files.list()] == [output, *newest_first]
    assert [f.id for f in api.files.list(purpose="batch")] == newest_first
    assert [f.id for f in api.files.list(purpose="batch_output")] == [output]
    assert [f.id for f in api.files.list(purpose="batch", order="asc")] == newest_first[::-1]
    first = api.files.list(purpose="batch", limit=2)
    assert [f.id for f in first.data] == newest_first[:2] and first.has_more
    assert [f.id for f in api.files.list(purpose="batch", limit=2)] == newest_first  # the client pages on
    assert api.files.list(limit=1).data[0].model_dump() == api.files.retrieve(output).model_dump()
    assert list(client(batch_gateway, issuer, new_user()).files.list()) == []  # another user's files are not listed

    for query, param, allowed in [
        ({"purpose": "fine-tune"}, "purpose", "'batch' or 'batch_output'"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"order": "up"}, "order", "'asc' or 'desc'"),
        ({"after": "../x"}, "after", "file-"),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            api.files.list(**query)
        assert refused.value.param == param and allowed in refused.value.message, refused.value.message


def test_only_its_owner_deletes_a_file_which_removes_its_object(batch_gateway, issuer, gcs):
    alice, bob = client(batch_gateway, issuer, new_user()), client(batch_gateway, issuer, new_user())
    uploaded = alice.files.create(file=("mine.jsonl", jsonl(request_line("a"))), purpose="batch")
    with pytest.raises(openai.NotFoundError):
        bob.files.delete(uploaded.id)
    assert (BUCKET, f"inputs/{uploaded.id}.jsonl") in gcs.app.state.objects

    deleted = alice.files.delete(uploaded.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (uploaded.id, "file", True)
    assert (BUCKET, f"inputs/{uploaded.id}.jsonl") not in gcs.app.state.objects
    assert list(alice.files.list()) == []
    for gone in (alice.files.retrieve, alice.files.content, alice.files.delete):
        with pytest.raises(openai.NotFoundError):
            gone(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        alice.files.delete("not-a-file-id")


def test_a_file_an_unfinished_batch_uses_may_be_deleted_and_the_batch_runs_on(batch_gateway, issuer, db):
    """The batch's lines were copied into the database when it was made: it does not need the
    file, and keeps its input_file_id, which is then not found, as OpenAI's is."""
    api = client(batch_gateway, issuer, new_user())
    uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"), request_line("b"))), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert api.files.delete(uploaded.id).deleted
    still = api.batches.retrieve(batch.id)
    assert (still.status, still.input_file_id, still.request_counts.total) == ("in_progress", uploaded.id, 2)
    assert len(db("SELECT line FROM batch_lines WHERE batch_id = %s AND status = 'queued'", batch.id)) == 2
    with pytest.raises(openai.NotFoundError):
        api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")


def test_a_file_whose_object_went_away_is_not_found_for_a_new_batch(batch_gateway, issuer, gcs):
    """A delete removes the object, then the row: a batch made in between finds no file (404), not a 503."""
    api = client(batch_gateway, issuer, new_user())
    uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
    del gcs.app.state.objects[(BUCKET, f"inputs/{uploaded.id}.jsonl")]
    with pytest.raises(openai.NotFoundError) as absent:
        api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert uploaded.id in absent.value.message


class Trickle(threading.Thread):
    """A real slow client: an upload sent over its own socket a byte every ``every`` seconds,
    until the gateway answers or closes the connection."""

    def __init__(self, server, token: str, every: float = 2.0) -> None:
        super().__init__()
        self.server, self.token, self.every = server, token, every
        self.status: int | None = None
        self.code: str | None = None
        self.seconds = 0.0

    def run(self) -> None:
        headers, body = multipart_upload(jsonl(request_line("slow")))
        host, port = self.server.url.removeprefix("http://").split(":")
        head = (
            f"POST /v1/files HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: {headers['content-type']}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        answer = b""
        started = time.monotonic()
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head.encode())
            sock.settimeout(self.every)
            for byte in body:
                try:
                    sock.sendall(bytes([byte]))
                    answer = sock.recv(65536)
                    break  # answered (or closed) before the body was sent
                except TimeoutError:
                    continue
                except OSError:
                    break
            self.seconds = time.monotonic() - started
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    answer += chunk
        if answer:
            status_line, _, rest = answer.partition(b"\r\n")
            self.status = int(status_line.split()[1])
            self.code = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"]


def test_one_users_slow_uploads_neither_hold_every_slot_nor_outlast_the_minimum_rate(issuer, batch_orchestrator):
    """Eight uploads of one user, a byte every 2 s: two of them take this user's share of the
    slots and fail 408 once they fall below the minimum rate; the other six are 429 at once.
    Another user uploads meanwhile."""
    with gateway_server(
        issuer,
        batch_orchestrator.url,
        rate_limit_burst=100,
        batch_concurrent_uploads=4,
        batch_concurrent_uploads_per_user=2,
        body_timeout_seconds=3,
        batch_upload_min_bytes_per_second=1000,
        batch_upload_timeout_seconds=300,
    ) as server:
        slow = [Trickle(server, issuer.token("trickler")) for _ in range(8)]
        for upload_thread in slow:
            upload_thread.start()
        time.sleep(1)
        other = client(server, issuer, new_user()).files.create(
            file=("q.jsonl", jsonl(request_line("a"))), purpose="batch"
        )
        for upload_thread in slow:
            upload_thread.join(timeout=30)
        after = upload(server, issuer.token("trickler"), jsonl(request_line("a")))
    assert other.status == "processed"
    outcomes = sorted((t.status, t.code) for t in slow)
    assert outcomes == [(408, "request_timeout")] * 2 + [(429, "too_many_uploads")] * 6, outcomes
    assert all(t.seconds < 10 for t in slow), [t.seconds for t in slow]  # not BATCH_UPLOAD_TIMEOUT_SECONDS
    assert after.status_code == 200  # the slow ones gave their slots back
