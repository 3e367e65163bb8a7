"""The gateway as it runs on Cloud Run: its own process, started as its image starts it
(devtools/image_tree.py), configured by environment variables only, fetching Google ID tokens
from the metadata server."""

from __future__ import annotations

import subprocess

import httpx
import jwt

from devtools.harness import ServedIssuer, Server, cloud_run_env, free_port, wait_for
from devtools.image_tree import image_process
from devtools.standins.metadata_server import create_app as create_metadata


def test_gateway_process_sends_a_google_id_token_for_the_orchestrator(issuer: ServedIssuer, upstream: Server) -> None:
    with Server(create_metadata()) as metadata:
        port = free_port()
        env = cloud_run_env(
            metadata,
            JWKS_URL=issuer.jwks_url,
            JWT_ISSUER=issuer.issuer,
            JWT_AUDIENCE=issuer.audience,
            ORCHESTRATOR_URL=upstream.url,  # the stand-in records what it receives
            ORCHESTRATOR_AUTH="google-id-token",
        )
        with image_process(
            "gateway", {**env, "PORT": str(port)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ) as process:
            try:
                url = f"http://127.0.0.1:{port}"
                assert wait_for(lambda: _healthy(url), timeout=30), "the gateway did not start"
                before = len(upstream.app.state.requests)
                response = httpx.post(
                    f"{url}/v1/chat/completions",
                    timeout=30,
                    headers={"authorization": f"Bearer {issuer.token('ivan')}"},
                    json={"model": "standin-echo", "messages": [{"role": "user", "content": "hi"}]},
                )
                if response.status_code != 200:  # the gateway's log says why
                    process.terminate()
                    raise AssertionError(process.communicate(timeout=10)[0].decode()[-3000:])
                received = upstream.app.state.requests[before]["headers"]
                scheme, token = received["authorization"].split(" ")
                assert scheme == "Bearer"
                assert jwt.decode(token, options={"verify_signature": False})["aud"] == upstream.url
                assert received["x-user-id"] == "ivan"
                assert metadata.app.state.audiences == [upstream.url]
            finally:
                process.terminate()
                output = process.communicate(timeout=10)[0].decode()
    assert '"message": "request"' in output  # JSON logs on stdout


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
