"""The gateway remembers tokens that passed, so it checks each one in full once; these
tests hold it to forgetting them when they expire, when their key leaves the key set,
and when too many are remembered."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import pytest
from fastapi import FastAPI

from devtools.harness import ServedIssuer, Server
from services.gateway import auth
from services.gateway.auth import JwksCache, Unauthorized, Verifier


@dataclass
class KeySet:
    """A JWKS endpoint at ``url``, serving ``document`` as the test changes it."""

    url: str
    document: dict[str, Any]


@pytest.fixture
def key_set(issuer: ServedIssuer) -> Iterator[KeySet]:
    """A JWKS endpoint whose document the test may change."""
    document = issuer.jwks()
    app = FastAPI()

    @app.get("/jwks.json")
    async def jwks() -> dict[str, Any]:
        return document

    with Server(app) as server:
        yield KeySet(server.url, document)


def verify_all(
    key_set: KeySet,
    issuer: ServedIssuer,
    tokens: list[str],
    *,
    jwks_ttl: int = 3600,
    between: Callable[[int, Verifier], None] | None = None,
) -> tuple[list[str], Verifier]:
    """Verify ``tokens`` one after another with one Verifier; each result is a user id or the
    Unauthorized reason. ``between(i)`` runs before token i."""

    async def run() -> tuple[list[str], Verifier]:
        async with aiohttp.ClientSession() as client:
            verifier = Verifier(
                JwksCache(f"{key_set.url}/jwks.json", client, jwks_ttl, 0), issuer.issuer, issuer.audience, 0, 8192
            )
            results: list[str] = []
            for index, token in enumerate(tokens):
                if between:
                    between(index, verifier)
                try:
                    results.append((await verifier.verify(f"Bearer {token}")).user_id)
                except Unauthorized as err:
                    results.append(err.reason)
            return results, verifier

    return asyncio.run(run())


def test_a_remembered_token_is_checked_in_full_only_once(
    key_set: KeySet, issuer: ServedIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issuer.token("alice")

    def decode_once(index: int, verifier: Verifier) -> None:
        if index == 1:
            monkeypatch.setattr(jwt, "decode", lambda *a, **k: pytest.fail("checked in full again"))

    assert verify_all(key_set, issuer, [token, token], between=decode_once)[0] == ["alice", "alice"]


def test_a_remembered_token_is_refused_once_it_expires(key_set: KeySet, issuer: ServedIssuer) -> None:
    token = issuer.token("alice", ttl=2)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]

    def wait_for_expiry(index: int, verifier: Verifier) -> None:
        if index == 1:
            time.sleep(max(0.0, expires - time.time() + 0.05))

    # The leeway is 0: the second use is past exp.
    assert verify_all(key_set, issuer, [token, token], between=wait_for_expiry)[0] == ["alice", "ExpiredSignatureError"]


def test_a_remembered_token_is_refused_once_its_key_leaves_the_key_set(key_set: KeySet, issuer: ServedIssuer) -> None:
    token = issuer.token("alice")

    def rotate(index: int, verifier: Verifier) -> None:
        if index == 1:
            key_set.document["keys"] = []

    # A TTL of 0: every request rereads the key set, as it would an hour after a rotation.
    assert verify_all(key_set, issuer, [token, token], jwks_ttl=0, between=rotate)[0] == ["alice", "unknown key id"]


def test_a_tampered_copy_of_a_remembered_token_is_still_refused(key_set: KeySet, issuer: ServedIssuer) -> None:
    token = issuer.token("alice")
    head, payload, signature = token.split(".")
    assert verify_all(key_set, issuer, [token, f"{head}.{payload}.{signature[:-4]}AAAA"])[0] == [
        "alice",
        "InvalidSignatureError",
    ]


def test_the_least_recently_used_token_is_forgotten_first(
    key_set: KeySet, issuer: ServedIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "MAX_REMEMBERED_TOKENS", 2)
    alice, bob, carol = (issuer.token(name) for name in ("alice", "bob", "carol"))
    results, verifier = verify_all(key_set, issuer, [alice, bob, alice, carol])
    assert results == ["alice", "bob", "alice", "carol"]
    # alice was used again after bob, so bob is the one forgotten.
    assert list(verifier.passed) == [hashlib.sha256(t.encode()).digest() for t in (alice, carol)]
