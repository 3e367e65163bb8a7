"""Slow and concurrent uploads: an upload's own deadline for its body, the bound on uploads at
once, and one user's slow uploads neither holding every slot nor outlasting the minimum rate."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx

from batch_helpers import (  # noqa: F401 - fixtures
    batch_orchestrator,
    client,
    jsonl,
    multipart_upload,
    new_user,
    queue,
    request_line,
    upload,
)
from devtools.harness import ServedIssuer, Server, gateway_settings
from servers import gateway_server
from services.gateway.app import create_app as create_gateway


def slowly(body: bytes, seconds: float = 2) -> Iterator[bytes]:
    """The body in four pieces, the first after seconds / 4 and the last after ``seconds``."""
    piece = len(body) // 4 + 1
    for start in range(0, len(body), piece):
        time.sleep(seconds / 4)
        yield body[start : start + piece]


def test_an_upload_has_its_own_deadline_for_the_body(issuer: ServedIssuer, batch_orchestrator: Server) -> None:
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


def test_uploads_beyond_the_concurrent_bound_are_503_to_retry(issuer: ServedIssuer, batch_orchestrator: Server) -> None:
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


class Trickle(threading.Thread):
    """A real slow client: an upload sent over its own socket a byte every ``every`` seconds,
    until the gateway answers or closes the connection."""

    def __init__(self, server: Server, token: str, every: float = 2.0) -> None:
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


def test_one_users_slow_uploads_neither_hold_every_slot_nor_outlast_the_minimum_rate(
    issuer: ServedIssuer, batch_orchestrator: Server
) -> None:
    """Eight uploads of one user, a byte every 2 s: two of them take this user's share of the
    slots and fail 408 once they fall below the minimum rate; the other six are 429 at once.
    Another user uploads meanwhile."""
    slots = {"batch_concurrent_uploads": 4, "batch_concurrent_uploads_per_user": 2}
    pace = {"body_timeout_seconds": 3, "batch_upload_min_bytes_per_second": 1000, "batch_upload_timeout_seconds": 300}
    with gateway_server(issuer, batch_orchestrator.url, rate_limit_burst=100, **slots, **pace) as server:
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
