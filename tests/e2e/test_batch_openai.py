"""OpenAI's Batch API end to end, driven by the official openai client: the gateway and the
orchestrator, the batch worker as its image runs it, PostgreSQL, the Pub/Sub emulator, the Cloud
Storage stand-in and the model stand-in (devtools/batch_chain.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types import Batch
from openai.types.batch_request_counts import BatchRequestCounts

from devtools.batch_chain import BatchChain, batch_chain


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def line(custom_id: str, model: str = "standin-echo", content: str = "hello") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": content}]},
    }


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchChain]:
    with batch_chain(tmp_path_factory.mktemp("batch-chain")) as running:
        yield running


@pytest.fixture(scope="module")
def client(chain: BatchChain) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{chain.gateway_url}/v1", api_key=chain.token, max_retries=0)


def finished(client: openai.OpenAI, batch_id: str, timeout: float = 240) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        assert time.monotonic() < deadline, f"{batch_id} still {batch.status}: {batch.request_counts}"
        time.sleep(0.5)


def counts(batch: Batch) -> BatchRequestCounts:
    assert batch.request_counts is not None, batch
    return batch.request_counts


def results(client: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    text = client.files.content(file_id).text
    return {row["custom_id"]: row for row in map(json.loads, text.splitlines())}


def submit(client: openai.OpenAI, lines: list[dict[str, Any]]) -> Batch:
    uploaded = client.files.create(file=("batch.jsonl", jsonl(lines)), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")


def test_a_thousand_line_batch_completes_with_a_thousand_results(chain: BatchChain, client: OpenAI) -> None:
    ids = [f"request-{i}" for i in range(1000)]
    batch = finished(client, submit(client, [line(i, content=f"question {i}") for i in ids]).id)
    assert batch.status == "completed"
    assert (counts(batch).total, counts(batch).completed, counts(batch).failed) == (1000, 1000, 0)
    output = results(client, batch.output_file_id)
    assert sorted(output) == sorted(ids)
    for row in output.values():
        assert row["error"] is None
        assert row["response"]["status_code"] == 200
        assert row["response"]["body"]["object"] == "chat.completion"
    assert batch.error_file_id is None or results(client, batch.error_file_id) == {}
    # Each line charged once to the user's ledger, as an interactive request would be.
    [(charged,)] = chain.rows(
        "SELECT count(*) FROM batch_lines WHERE batch_id = %s AND ledger_id IS NOT NULL", batch.id
    )
    [(ledger,)] = chain.rows(
        "SELECT count(*) FROM usage_ledger WHERE id IN (SELECT ledger_id FROM batch_lines WHERE batch_id = %s)",
        batch.id,
    )
    assert charged == ledger == 1000


def test_a_poison_line_is_dead_lettered_and_reported_in_the_error_file(chain: BatchChain, client: OpenAI) -> None:
    lines = [line("good-1"), line("poison", model="standin-fail"), line("good-2")]
    batch = finished(client, submit(client, lines).id)
    assert batch.status == "completed"
    assert (counts(batch).completed, counts(batch).failed) == (2, 1)
    assert sorted(results(client, batch.output_file_id)) == ["good-1", "good-2"]
    errors = results(client, batch.error_file_id)
    assert list(errors) == ["poison"]
    assert errors["poison"]["error"]["code"]
    # The model was asked once per delivery attempt, never after the dead letter.
    asked = [r for r in chain.upstream.app.state.requests if r["body"]["model"] == "standin-fail"]
    assert len(asked) == 5


def test_cancel_stops_new_work(chain: BatchChain, client: OpenAI) -> None:
    ids = [f"slow-{i}" for i in range(300)]
    batch = submit(client, [line(i, model="standin-lag", content=i) for i in ids])
    time.sleep(1.0)
    assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled")
    batch = finished(client, batch.id)
    assert batch.status == "cancelled"
    done = results(client, batch.output_file_id)
    cancelled = results(client, batch.error_file_id)
    assert set(done) | set(cancelled) == set(ids) and not set(done) & set(cancelled)
    assert cancelled, "the cancel came after every line had run"
    asked = {
        r["body"]["messages"][0]["content"]
        for r in chain.upstream.app.state.requests
        if r["body"]["model"] == "standin-lag"
    }
    # The model answered exactly the lines in the output: none the cancel found waiting.
    assert asked == set(done)


def test_a_malformed_file_is_refused_with_its_line_number(client: OpenAI) -> None:
    bad = jsonl([line("a")]) + b'{"custom_id": "b", "method": "POST"\n' + jsonl([line("c")])
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("bad.jsonl", bad), purpose="batch")
    assert "line 2" in str(refused.value)
