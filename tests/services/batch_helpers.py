"""What the Batch API tests share: the batch topic, an orchestrator and gateways with batches
enabled, the batch files they send, and a worker's part done by hand (services/worker is not here)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import psycopg
import pytest
from openai.types import Batch
from openai.types.batch_request_counts import BatchRequestCounts
from psycopg.rows import dict_row

from devtools.harness import Postgres, ServedIssuer, Server, orchestrator_settings, wait_for
from devtools.pubsub_emulator import PubSubEmulator
from servers import gateway_server
from services.orchestrator.app import create_app as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings

BUCKET = "test-project-test-batch"
# A batch line, a message's data, or a row as psycopg's dict_row reads it.
Json = dict[str, Any]
# The db fixture: the rows an SQL statement returns (none for an UPDATE), read on a connection of its own.
Query = Callable[..., list[Json]]


def request_line(custom_id: str, content: str = "hello", **body: object) -> Json:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "standin-echo", "messages": [{"role": "user", "content": content}], **body},
    }


def jsonl(*lines: Json, ending: bytes = b"\n") -> bytes:
    return b"".join(json.dumps(line).encode() + ending for line in lines)


@pytest.fixture(scope="module")
def queue(pubsub: PubSubEmulator) -> Iterator[tuple[str, str]]:
    """The batch topic, with a subscription that the tests read the published messages from."""
    suffix = secrets.token_hex(4)
    topic = pubsub.create_topic(f"batch-lines-{suffix}")
    probe = f"batch-probe-{suffix}"
    pubsub.create_subscription(probe, f"batch-lines-{suffix}")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in pubsub.environment.items():
            patch.setenv(name, value)
        yield topic, probe


def batch_orchestrator_settings(upstream: Server, gcs: Server, topic: str, **overrides: Any) -> OrchestratorSettings:
    """Batches enabled: files in the stand-in's BUCKET, lines published on ``topic``."""
    return orchestrator_settings(
        upstream.url, batch_bucket=BUCKET, batch_topic=topic, storage_url=gcs.url, storage_auth="none", **overrides
    )


@pytest.fixture(scope="module")
def batch_orchestrator(postgres: Postgres, upstream: Server, gcs: Server, queue: tuple[str, str]) -> Iterator[Server]:
    topic, _ = queue
    with Server(
        create_orchestrator(batch_orchestrator_settings(upstream, gcs, topic), conninfo=postgres.conninfo)
    ) as server:
        yield server


@contextmanager
def batch_servers(
    issuer: ServedIssuer, upstream: Server, gcs: Server, conninfo: str, topic: str, **orchestrator: Any
) -> Iterator[Server]:
    """An orchestrator of its own, its settings ``orchestrator`` apart the tests', on the database
    at ``conninfo``, and a gateway in front of it: the gateway."""
    settings = batch_orchestrator_settings(upstream, gcs, topic, **orchestrator)
    with (
        Server(create_orchestrator(settings, conninfo=conninfo)) as server,
        gateway_server(issuer, server.url, rate_limit_burst=100) as gateway,
    ):
        yield gateway


@pytest.fixture(scope="module")
def batch_gateway(issuer: ServedIssuer, batch_orchestrator: Server) -> Iterator[Server]:
    with gateway_server(issuer, batch_orchestrator.url, rate_limit_per_minute=6000, rate_limit_burst=1000) as server:
        yield server


@pytest.fixture(scope="module")
def small_gateway(issuer: ServedIssuer, batch_orchestrator: Server) -> Iterator[Server]:
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


def client(gateway: Server, issuer: ServedIssuer, user: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=issuer.token(user), max_retries=0)


def counts(batch: Batch) -> BatchRequestCounts:
    """A batch's request counts, which the orchestrator always sends (the client's model has them optional)."""
    assert batch.request_counts is not None
    return batch.request_counts


def new_user() -> str:
    return f"batch-user-{secrets.token_hex(4)}"


@pytest.fixture
def db(postgres: Postgres) -> Query:
    def query(sql: str, *params: object) -> list[Json]:
        with psycopg.connect(postgres.conninfo, row_factory=dict_row, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    return query


def pulled(pubsub: PubSubEmulator, subscription: str, batch_id: str, count: int, timeout: float = 20) -> list[Json]:
    """The data of the batch's messages on the subscription: waits for ``count``, then takes any more."""
    got: list[Json] = []

    def take() -> bool:
        for message in pubsub.pull(subscription, 1000):
            data = json.loads(base64.b64decode(message["data"]))
            if data["batch_id"] == batch_id:
                got.append(data)
        return len(got) >= count

    wait_for(take, timeout=timeout)
    take()
    return got


def upload(
    gateway: Server, token: str, data: bytes, purpose: str = "batch", filename: str = "in.jsonl"
) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/files",
        headers={"authorization": f"Bearer {token}"},
        files={"file": (filename, data, "application/jsonl")},
        data={"purpose": purpose},
        timeout=30,
    )


def finish_as_a_worker(db: Query, gcs_url: str, batch_id: str, user: str) -> str:
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


NUL = "\u0000"
