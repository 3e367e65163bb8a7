"""Messages to the batch workers on the environment's topic (google-cloud-pubsub's
PublisherClient, which reads PUBSUB_EMULATOR_HOST itself). A message names a line or a batch,
never carries a prompt: the line's body is in batch_lines; or carries a ledger outcome. A message published twice is
harmless, as the workers' claim on a line makes its effect happen once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from typing import Any

from google.cloud.pubsub_v1 import PublisherClient, types

# At most 1,000 messages and 10 MB per publish request
# (cloud.google.com/pubsub/quotas#resource_limits); a line's message is some 60 bytes.
BATCHING = types.BatchSettings(max_messages=1000, max_bytes=1_000_000, max_latency=0.05)


class PublishFailed(Exception):
    """Not every message was accepted by Pub/Sub in time."""


def line_message(batch_id: str, line: int) -> dict[str, Any]:
    return {"kind": "line", "batch_id": batch_id, "line": line}


def check_message(batch_id: str) -> dict[str, Any]:
    """Asks a worker to look at the batch and finish it if nothing of it is running (on cancel)."""
    return {"kind": "check", "batch_id": batch_id}


def outcome_message(fields: dict[str, Any]) -> dict[str, Any]:
    """A usage ledger outcome (ledger.Outcome.fields()) the database could not take before the
    orchestrator's instance went: a batch worker writes it once the database is back."""
    return {"kind": "outcome", **fields}


class Publisher:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.client = PublisherClient(batch_settings=BATCHING)

    async def publish(self, messages: list[dict[str, Any]], timeout: float) -> None:
        """Return once Pub/Sub has every message, or raise PublishFailed after ``timeout``.
        The client publishes from its own threads; so does this, to keep the event loop free
        while thousands of messages are handed to it."""
        await asyncio.to_thread(self._publish_all, messages, timeout)

    def _publish_all(self, messages: list[dict[str, Any]], timeout: float) -> None:
        futures = [
            self.client.publish(self.topic, json.dumps(message, separators=(",", ":")).encode()) for message in messages
        ]
        done, pending = concurrent.futures.wait(futures, timeout)
        if pending:
            raise PublishFailed(f"{len(pending)} of {len(futures)} messages unpublished after {timeout} s")
        errors = [f.exception() for f in done if f.exception() is not None]
        if errors:
            raise PublishFailed(f"{len(errors)} of {len(futures)} messages refused: {errors[0]!r}")

    def close(self) -> None:
        self.client.stop()  # sends what is batched, then ends the client's threads
