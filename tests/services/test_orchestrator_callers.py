"""The orchestrator checks its caller (services.orchestrator.callers): a Google-signed ID token for
its URL, of an allowed service account. Tokens come from the metadata server stand-in, as the
gateway's do on Cloud Run, signed with the stand-in's "Google" key, whose JWKS the orchestrator
reads from CALLER_CERTS_URL."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from pydantic import ValidationError

from devtools.harness import Postgres, ServedIssuer, Server, free_port, gateway_settings, orchestrator_settings
from devtools.standins.metadata_server import CERTS_PATH, GoogleSigner
from devtools.standins.metadata_server import create_app as create_metadata
from servers import one
from services.gateway.app import create_app as create_gateway
from services.orchestrator.app import create_app as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings

GATEWAY = "gateway@project.iam.gserviceaccount.com"
OTHER = "intruder@project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def google() -> Iterator[dict[str, Server]]:
    """Google's signing key, shared by the metadata stand-ins of two accounts."""
    signer = GoogleSigner()
    with (
        Server(create_metadata(email=GATEWAY, signer=signer)) as gateway,
        Server(create_metadata(email=OTHER, signer=signer)) as other,
    ):
        yield {"gateway": gateway, "other": other}


@pytest.fixture(scope="module")
def guarded(postgres: Postgres, upstream: Server, google: dict[str, Server]) -> Iterator[Server]:
    """An orchestrator that admits the gateway's account, its audience its own URL."""
    allowed = f"{GATEWAY}, someone-else@project.iam.gserviceaccount.com"
    with guarded_orchestrator(postgres, upstream, allowed, google["gateway"].url + CERTS_PATH) as server:
        yield server


@contextmanager
def guarded_orchestrator(
    postgres: Postgres, upstream: Server, allowed_callers: str, caller_certs_url: str
) -> Iterator[Server]:
    """An orchestrator that checks its callers, its audience its own URL."""
    port = free_port()
    settings = orchestrator_settings(
        upstream.url,
        caller_auth="google-id-token",
        caller_audience=f"http://127.0.0.1:{port}",
        allowed_callers=allowed_callers,
        caller_certs_url=caller_certs_url,
    )
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo), port=port) as server:
        yield server


def id_token(metadata: Server, audience: str, token_format: str = "full") -> str:
    """What google-auth gets from the metadata server on Cloud Run (it asks for format=full)."""
    response = httpx.get(
        f"{metadata.url}/computeMetadata/v1/instance/service-accounts/default/identity",
        params={"audience": audience, "format": token_format},
        headers={"Metadata-Flavor": "Google"},
    )
    response.raise_for_status()
    return response.text


def chat(server: Server, authorization: str | None, user: str) -> httpx.Response:
    headers = {"x-user-id": user, **({"authorization": authorization} if authorization else {})}
    body = {"model": "standin-echo", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def billed(postgres: Postgres, user: str) -> int:
    with psycopg.connect(postgres.conninfo) as conn:
        (count,) = one(conn.execute("SELECT count(*) FROM usage_ledger WHERE user_id = %s", (user,)))
    return int(count)


def refused(response: httpx.Response, status: int, code: str) -> bool:
    return response.status_code == status and response.json()["error"]["code"] == code


def forged(audience: str, **claims: object) -> str:
    """A token shaped as the gateway's, signed with a key that is not Google's."""
    now = int(time.time())
    payload = {"iss": "https://accounts.google.com", "aud": audience, "sub": "1", "iat": now, "exp": now + 3600}
    return GoogleSigner().sign({**payload, "email": GATEWAY, "email_verified": True, **claims})


def test_the_gateways_token_for_this_url_is_served(
    guarded: Server, google: dict[str, Server], postgres: Postgres
) -> None:
    user = f"caller-{secrets.token_hex(4)}"
    response = chat(guarded, f"Bearer {id_token(google['gateway'], guarded.url)}", user)
    assert response.status_code == 200, response.text
    assert billed(postgres, user) == 1


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer garbage", "Basic Z2F0ZXdheTpwYXNz", "Bearer " + "a.b.c" * 3000],
    ids=["none", "empty", "garbage", "basic", "huge"],
)
def test_without_a_valid_token_it_is_401_and_nothing_runs_or_is_billed(
    guarded: Server, upstream: Server, postgres: Postgres, authorization: str | None
) -> None:
    user = f"anon-{secrets.token_hex(4)}"
    calls = len(upstream.app.state.requests)
    response = chat(guarded, authorization, user)
    assert refused(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert billed(postgres, user) == 0 and len(upstream.app.state.requests) == calls


def test_the_batch_routes_and_the_model_list_are_guarded_too(guarded: Server) -> None:
    assert refused(httpx.get(f"{guarded.url}/v1/models"), 401, "invalid_token")
    assert refused(httpx.get(f"{guarded.url}/v1/batches", headers={"x-user-id": "u"}), 401, "invalid_token")
    assert refused(httpx.post(f"{guarded.url}/v1/batches", headers={"x-user-id": "u"}, json={}), 401, "invalid_token")


def test_a_google_token_for_another_audience_is_401(guarded: Server, google: dict[str, Server]) -> None:
    # Minted for another service: replayed here, it must not pass (the reason tokens name an audience).
    token = id_token(google["gateway"], "https://other-service-123456789012.europe-west1.run.app")
    assert refused(chat(guarded, f"Bearer {token}", "u"), 401, "invalid_token")


def test_a_token_not_signed_by_google_is_401(guarded: Server) -> None:
    assert refused(chat(guarded, f"Bearer {forged(guarded.url)}", "u"), 401, "invalid_token")
    # ... nor one signed with a shared secret, whatever it claims.
    now = int(time.time())
    claims = {"iss": "https://accounts.google.com", "aud": guarded.url, "sub": "1", "iat": now, "exp": now + 60}
    hs256 = jwt.encode({**claims, "email": GATEWAY, "email_verified": True}, "s" * 32, algorithm="HS256")
    assert refused(chat(guarded, f"Bearer {hs256}", "u"), 401, "invalid_token")


def test_an_expired_google_token_is_401(guarded: Server, google: dict[str, Server]) -> None:
    signer: GoogleSigner = google["gateway"].app.state.signer
    past = int(time.time()) - 7200
    claims = {"iss": "https://accounts.google.com", "aud": guarded.url, "sub": "1", "iat": past, "exp": past + 3600}
    token = signer.sign({**claims, "email": GATEWAY, "email_verified": True})
    assert refused(chat(guarded, f"Bearer {token}", "u"), 401, "invalid_token")


def test_another_service_accounts_valid_token_is_403(
    guarded: Server, google: dict[str, Server], postgres: Postgres
) -> None:
    user = f"intruder-{secrets.token_hex(4)}"
    response = chat(guarded, f"Bearer {id_token(google['other'], guarded.url)}", user)
    assert refused(response, 403, "caller_not_allowed")
    assert billed(postgres, user) == 0


def test_a_token_without_the_callers_email_is_403(guarded: Server, google: dict[str, Server]) -> None:
    # format=standard: no email claim, so no way to tell which account called.
    token = id_token(google["gateway"], guarded.url, token_format="standard")
    assert refused(chat(guarded, f"Bearer {token}", "u"), 403, "caller_not_allowed")


def test_health_needs_no_token(guarded: Server) -> None:
    assert httpx.get(f"{guarded.url}/health").json() == {"status": "ok"}


def test_the_check_is_on_unless_turned_off_and_needs_its_audience_and_callers(upstream: Server) -> None:
    with pytest.raises(ValidationError, match="CALLER_AUDIENCE"):
        orchestrator_settings(upstream.url, caller_auth="google-id-token")
    base: dict[str, Any] = {"backends": {}, "routes": []}
    with pytest.raises(ValidationError, match="ALLOWED_CALLERS"):
        OrchestratorSettings.model_validate({**base, "caller_audience": "https://o.run.app"})
    settings = OrchestratorSettings.model_validate(
        {**base, "caller_audience": "https://o.run.app", "allowed_callers": f"{GATEWAY},"}
    )
    assert settings.caller_auth == "google-id-token" and settings.callers == {GATEWAY}


def test_turned_off_it_says_so_at_start(upstream: Server, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="orchestrator"):
        create_orchestrator(orchestrator_settings(upstream.url))
    assert any("caller check OFF" in record.getMessage() for record in caplog.records)


def test_with_googles_keys_out_of_reach_a_valid_token_is_503_not_401(
    postgres: Postgres, upstream: Server, google: dict[str, Server]
) -> None:
    unreachable = "http://127.0.0.1:9/oauth2/v3/certs"  # nothing listens there
    with guarded_orchestrator(postgres, upstream, GATEWAY, unreachable) as server:
        response = chat(server, f"Bearer {id_token(google['gateway'], server.url)}", "u")
    assert refused(response, 503, "caller_check_unavailable")
    assert response.headers["retry-after"] == "5"


def test_a_gateway_the_orchestrator_refuses_answers_502_not_the_users_401(
    guarded: Server, issuer: ServedIssuer
) -> None:
    """The refusal is of the gateway's identity: a user told 401 would sign in again, in vain."""
    with Server(create_gateway(gateway_settings(issuer, guarded.url))) as gateway:  # no ID token
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "standin-echo", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {issuer.token('someone')}"},
            timeout=30,
        )
        batches = httpx.get(f"{gateway.url}/v1/batches", headers={"authorization": f"Bearer {issuer.token('x')}"})
    assert refused(response, 502, "upstream_auth")
    assert refused(batches, 502, "upstream_auth")
