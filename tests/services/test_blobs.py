"""The services' Cloud Storage client against the JSON API stand-in, and the Pub/Sub emulator's
dead-letter behaviour the batch worker relies on."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest

from devtools.harness import Server
from devtools.pubsub_emulator import PubSubEmulator
from services.servicekit.blobs import BlobNotFound, BlobStore


class FixedToken:
    async def get(self) -> str:
        return "token-for-tests"


async def _round_trip(url: str) -> tuple[bytes, bool, bool, bytes]:
    async with aiohttp.ClientSession() as session:
        store = BlobStore("batch-bucket", session, FixedToken(), endpoint=url)
        name = "outputs/batch_1/output.jsonl"
        await store.put(name, b'{"a": 1}\n')
        await store.put(name, b"a second write of the same name")  # refused by the precondition: no-op
        data = await store.get(name)
        there, absent = await store.exists(name), await store.exists("outputs/none")
        with pytest.raises(BlobNotFound):
            await store.get("inputs/missing.jsonl")
        return data, there, absent, b"".join([chunk async for chunk in store.stream(name)])


def test_an_object_is_written_once_and_read_back(gcs: Server) -> None:
    data, there, absent, streamed = asyncio.run(_round_trip(gcs.url))
    assert data == streamed == b'{"a": 1}\n'
    assert (there, absent) == (True, False)
    # The name, slashes included, is one object of the bucket, written with the service's token.
    assert ("batch-bucket", "outputs/batch_1/output.jsonl") in gcs.app.state.objects
    assert "Bearer token-for-tests" in gcs.app.state.tokens


def test_the_emulator_dead_letters_after_the_maximum_attempts(pubsub: PubSubEmulator) -> None:
    pubsub.create_topic("probe-lines")
    pubsub.create_topic("probe-dead")
    pubsub.create_subscription("probe-dead", "probe-dead")
    pubsub.create_subscription(
        "probe-work",
        "probe-lines",
        ack_deadline_seconds=10,
        dead_letter_topic="probe-dead",
        max_delivery_attempts=5,
        minimum_backoff_seconds=0.1,
    )
    message = base64.b64encode(json.dumps({"kind": "line"}).encode()).decode()
    pubsub._call("POST", f"{pubsub.topic_path('probe-lines')}:publish", {"messages": [{"data": message}]})
    path = pubsub.subscription_path("probe-work")
    attempts = []
    for _ in range(50):
        got = pubsub._call("POST", f"{path}:pull", {"maxMessages": 1, "returnImmediately": True})
        for received in got.get("receivedMessages", []):
            attempts.append(received["deliveryAttempt"])
            pubsub._call("POST", f"{path}:modifyAckDeadline", {"ackIds": [received["ackId"]], "ackDeadlineSeconds": 0})
        dead = pubsub.pull("probe-dead")
        if dead:
            break
        asyncio.run(asyncio.sleep(0.2))
    assert attempts == [1, 2, 3, 4, 5]
    assert dead[0]["attributes"]["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
