"""The orchestrator's Vertex AI backend as it runs on Cloud Run: an access token for the
cloud-platform scope from the metadata server (stand-in), reused while it is fresh, sent
to Vertex's OpenAI-compatible endpoint. The model stand-in takes Vertex's place, since
this machine cannot reach Google; everything else is the real code path, run from the
orchestrator's image tree (devtools/image_tree.py)."""

from __future__ import annotations

import json
import subprocess
import textwrap

from devtools.harness import Server, cloud_run_env
from devtools.image_tree import image_tree
from devtools.standins.metadata_server import create_app as create_metadata

SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    import aiohttp
    from services.modelcalls.backends import CLOUD_PLATFORM, Backend, GoogleAccessToken
    from services.modelcalls.settings import BackendSettings

    async def main(upstream_url):
        settings = BackendSettings(kind="vertex", project="my-project", location="europe-west4",
                                   model="google/gemini-2.0-flash-001")
        backend = Backend("vertex", settings, GoogleAccessToken([CLOUD_PLATFORM]))
        print(json.dumps({"url": backend.url}))
        backend.url = upstream_url + "/v1/chat/completions"  # the stand-in in Vertex's place
        body = {"model": "google/gemini", "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as client:
            for _ in range(2):
                response, _ = await backend.open(client, body, 10)
                print(json.dumps({"status": response.status, "answer": await response.json()}))

    asyncio.run(main(sys.argv[1]))
""")


def test_vertex_backend_sends_the_service_accounts_access_token(upstream: Server) -> None:
    with Server(create_metadata()) as metadata:
        env = cloud_run_env(metadata)
        before = len(upstream.app.state.requests)
        with image_tree("orchestrator") as tree:  # its files and packages
            run = subprocess.run(
                **tree.popen_args(env, ["python", "-c", SCRIPT, upstream.url]),
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert run.returncode == 0, run.stderr[-3000:]
        scopes = metadata.app.state.token_scopes
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    # cloud.google.com/vertex-ai/generative-ai/docs/multimodal/call-vertex-using-openai-library
    assert lines[0]["url"] == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project"
        "/locations/europe-west4/endpoints/openapi/chat/completions"
    )
    assert [line["status"] for line in lines[1:]] == [200, 200]
    received = upstream.app.state.requests[before:]
    assert [r["headers"]["authorization"] for r in received] == ["Bearer standin-access-token-1"] * 2
    assert [r["body"]["model"] for r in received] == ["google/gemini-2.0-flash-001"] * 2
    assert scopes == ["https://www.googleapis.com/auth/cloud-platform"]  # one token, reused
