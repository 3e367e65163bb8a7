"""Lines per second through the whole batch path against the same requests sent one by one
through the interactive API, with the model stand-in answering each request 0.2 s late
(devtools/standins/openai_upstream.py, standin-lag).

    make bench-batch                       # 400 lines, one worker
    make bench-batch ARGS="--lines 1000 --workers 2"

Judges the target: each worker at 90% or more of its physical limit, its lines in flight
(the worker's flow control, max_outstanding_messages) divided by the model's latency, while it
had lines to answer (from the model stand-in's first request of the batch to its last answer)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import openai

from devtools.batch_chain import batch_chain
from devtools.standins.openai_upstream import LAG_SECONDS
from services.worker.settings import WorkerSettings

TARGET = 0.90  # of the physical limit, each worker

MODEL = "standin-lag"


def request(question: str) -> dict[str, object]:
    """The chat request a batch line holds: what the one-by-one path sends for the same question."""
    return {"model": MODEL, "messages": [{"role": "user", "content": question}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=400)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--interactive", type=int, default=100, help="requests sent one by one (fewer: they are slow)")
    args = parser.parse_args()
    questions = [f"question {i}" for i in range(args.lines)]
    with (
        tempfile.TemporaryDirectory(prefix="bench-batch-") as directory,
        batch_chain(Path(directory), workers=args.workers) as chain,
    ):
        client = openai.OpenAI(base_url=f"{chain.gateway_url}/v1", api_key=chain.token, max_retries=0)
        body = "".join(
            json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": request(q)})
            + "\n"
            for i, q in enumerate(questions)
        ).encode()
        started = time.monotonic()
        uploaded = client.files.create(file=("bench.jsonl", body), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        while batch.status not in ("completed", "failed", "cancelled", "expired"):
            time.sleep(0.2)
            batch = client.batches.retrieve(batch.id)
        batch_seconds = time.monotonic() - started
        counts = batch.request_counts
        assert batch.status == "completed" and counts is not None and counts.completed == args.lines, batch
        asked = [r["at"] for r in chain.upstream.app.state.requests if r["body"]["model"] == MODEL]
        busy_seconds = max(asked) + LAG_SECONDS - min(asked)

        started = time.monotonic()
        for question in questions[: args.interactive]:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}])
        one_by_one = (time.monotonic() - started) / args.interactive

    print(
        f"model stand-in latency {LAG_SECONDS:.1f} s a request; {args.workers} worker process(es), default flow control"
    )
    print(
        f"batch:       {args.lines} lines in {batch_seconds:.1f} s (upload to completed): {args.lines / batch_seconds:.1f} lines/s"
    )
    print(
        f"interactive: {args.interactive} requests one by one, {one_by_one * 1000:.0f} ms each: {1 / one_by_one:.1f} requests/s"
    )
    print(f"batch / one by one: {args.lines / batch_seconds * one_by_one:.1f}x")
    in_flight = WorkerSettings.model_fields["max_outstanding_messages"].default
    limit = in_flight / LAG_SECONDS
    per_worker = args.lines / busy_seconds / args.workers
    share = per_worker / limit
    print(
        f"each worker, while it had lines: {per_worker:.1f} lines/s against its physical limit "
        f"{limit:.0f} ({in_flight} in flight / {LAG_SECONDS:.1f} s): {share:.0%} "
        f"(target >= {TARGET:.0%}: {'OK' if share >= TARGET else 'NOT MET'})"
    )


if __name__ == "__main__":
    main()
