"""Google's Pub/Sub emulator (`gcloud beta emulators pubsub`, Debian's google-cloud-cli-pubsub-emulator
package), started on loopback for a test session, with topics and subscriptions made through its
REST API. Measured on this image (gcloud 528): it honours subscriptions' dead-letter policies
(a message nacked max_delivery_attempts times moves to the dead-letter topic with the
CloudPubSubDeadLetterSource* attributes), retry policies and deliveryAttempt."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devtools.harness import free_port

PROJECT = "test-project"
MISSING = (
    "the Pub/Sub emulator is missing: `make test` installs Debian's google-cloud-cli-pubsub-emulator "
    "(Google's apt repository, with google-cloud-cli) and a Java runtime; or `gcloud components install "
    "pubsub-emulator beta` where gcloud is installed from Google's archive"
)


class PubSubEmulator:
    def __init__(self, directory: Path, project: str = PROJECT) -> None:
        gcloud = shutil.which("gcloud")
        assert gcloud, MISSING
        self.project, self.port = project, free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = directory / "pubsub-emulator.log"
        (directory / "pubsub-data").mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [
                gcloud,
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--project={project}",
                f"--host-port={self.host}",
                f"--data-dir={directory / 'pubsub-data'}",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # gcloud starts Java: stop the whole group
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/", timeout=1):
                    break
            except (OSError, urllib.error.URLError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(
                        f"the Pub/Sub emulator did not start within 60 s; its log ends: {self.log.read_text()[-2000:]}"
                        f"\n(if it is not installed: {MISSING})"
                    ) from None
                time.sleep(0.2)

    @property
    def environment(self) -> dict[str, str]:
        """What the client libraries read to talk to the emulator instead of Pub/Sub."""
        return {"PUBSUB_EMULATOR_HOST": self.host, "PUBSUB_PROJECT_ID": self.project}

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://{self.host}/v1/{path}",
            method=method,
            data=json.dumps(body or {}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            result: dict[str, Any] = json.loads(answer.read() or b"{}")
            return result

    def create_topic(self, topic: str) -> str:
        self._call("PUT", self.topic_path(topic))
        return self.topic_path(topic)

    def create_subscription(
        self,
        subscription: str,
        topic: str,
        *,
        ack_deadline_seconds: int = 60,
        dead_letter_topic: str | None = None,
        max_delivery_attempts: int = 5,
        minimum_backoff_seconds: float | None = None,
        maximum_backoff_seconds: float | None = None,
    ) -> str:
        body: dict[str, Any] = {"topic": self.topic_path(topic), "ackDeadlineSeconds": ack_deadline_seconds}
        if dead_letter_topic:
            body["deadLetterPolicy"] = {
                "deadLetterTopic": self.topic_path(dead_letter_topic),
                "maxDeliveryAttempts": max_delivery_attempts,
            }
        if minimum_backoff_seconds is not None:
            body["retryPolicy"] = {
                "minimumBackoff": f"{minimum_backoff_seconds}s",
                "maximumBackoff": f"{maximum_backoff_seconds or minimum_backoff_seconds}s",
            }
        self._call("PUT", self.subscription_path(subscription), body)
        return self.subscription_path(subscription)

    def pull(self, subscription: str, max_messages: int = 100) -> list[dict[str, Any]]:
        """Up to ``max_messages`` messages waiting on a subscription, acknowledged (for tests that
        read a dead-letter topic). The emulator (0.8.20) answers a pull with 100 messages at most,
        whatever maxMessages asks, so this pulls until it has them or the emulator has no more,
        then acknowledges them in one call (the pulls are well within their ack deadline)."""
        path = self.subscription_path(subscription)
        received: list[dict[str, Any]] = []
        while len(received) < max_messages:
            asked = {"maxMessages": max_messages - len(received), "returnImmediately": True}
            messages = self._call("POST", f"{path}:pull", asked).get("receivedMessages", [])
            if not messages:
                break
            received.extend(messages)
        if received:
            self._call("POST", f"{path}:acknowledge", {"ackIds": [m["ackId"] for m in received]})
        return [m["message"] for m in received]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
