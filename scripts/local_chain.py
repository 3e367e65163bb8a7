"""Dev as it deploys, on this machine (devtools/local_chain.py: the deploy rehearsal's chain,
with Google's side replaced by named stand-ins), the batch path included. From the repository root:

    make run-local                                          # dev, the model stand-in
    make run-local ENV=prod                                 # or ARGS="--env environments/prod.toml"
    make run-local ARGS="--upstream https://HOST/v1 --model MODEL --api-key-env VAR"
    python -m scripts.local_chain --help

It prints where to open the chat page, and the lines that point an OpenAI client at the
gateway (examples/openai_quickstart.py); Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import threading
from pathlib import Path

import httpx

from devtools.deployed_spec import BROWSER_KEY
from devtools.local_chain import DEV, PASSWORD, caller_check, local_chain
from devtools.standins.identity_platform import SIGN_IN_PATH
from devtools.standins.openai_upstream import DropConnection
from services.servicekit import logs

# Stable, so the printed lines stay right from one run to the next.
GATEWAY_PORT, FRONTEND_PORT = 8700, 8701
QUICKSTART_EMAIL = "quickstart@example.com"


class _IntendedDrops(logging.Filter):
    """The model stand-in's `standin-die` model drops its stream on purpose: one line, not uvicorn's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DropConnection):
            record.msg, record.args, record.exc_info = (
                "model stand-in: stream dropped on purpose (standin-die)",
                (),
                None,
            )
        return True


def sign_in(identity_url: str, email: str) -> str:
    """An ID token as the chat page gets one: the sign-in stand-in's accounts:signInWithPassword."""
    response = httpx.post(
        f"{identity_url}{SIGN_IN_PATH}", params={"key": BROWSER_KEY}, json={"email": email, "password": PASSWORD}
    )
    response.raise_for_status()
    return str(response.json()["idToken"])


def quick_start(gateway: str, token: str, model: str) -> list[str]:
    """The lines to paste into a shell: what an OpenAI client reads, the model, and a first request."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello!"}]})
    return [
        f"export OPENAI_BASE_URL={gateway}/v1",
        f"export OPENAI_API_KEY={token}",
        f"export OPENAI_MODEL={shlex.quote(model)}",
        'curl -s "$OPENAI_BASE_URL/chat/completions" -H "Authorization: Bearer $OPENAI_API_KEY" '
        f"-H 'content-type: application/json' -d {shlex.quote(body)}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", type=Path, default=DEV, help="environment file (default: environments/dev.toml)")
    parser.add_argument("--upstream", help="an OpenAI-compatible base URL ending in /v1 (default: the stand-in)")
    parser.add_argument("--model", help="the model name to ask the upstream for")
    parser.add_argument("--api-key-env", help="environment variable holding the upstream's API key")
    parser.add_argument("--gateway-port", type=int, default=GATEWAY_PORT, help=f"default {GATEWAY_PORT}")
    parser.add_argument("--frontend-port", type=int, default=FRONTEND_PORT, help=f"default {FRONTEND_PORT}")
    args = parser.parse_args()
    if args.upstream and not args.model:
        parser.error("--model is required with --upstream")
    logs.configure("WARNING")
    logging.getLogger("uvicorn.error").addFilter(_IntendedDrops())
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ports = {"gateway": args.gateway_port, "frontend": args.frontend_port}

    def progress(step: str) -> None:
        print(f"... {step}", file=sys.stderr, flush=True)

    with local_chain(
        args.env, args.upstream, args.model, args.api_key_env, ports=ports, batches=True, progress=progress
    ) as chain:
        backend = args.upstream or "the STAND-IN model server (canned replies, no real model)"
        print(f"Chat page: {chain['frontend']}   (sign in with any email and the password {PASSWORD!r})")
        print(f"Gateway:   {chain['gateway']}   model backend: {backend}")
        print(f"Orchestrator's caller check: {caller_check(chain['environments']['orchestrator'])}")
        print("Batches:   on (the batch worker, the Pub/Sub emulator, the Cloud Storage stand-in)")
        print(f"\nAn OpenAI client, as {QUICKSTART_EMAIL} (the token is valid for an hour):\n")
        for line in quick_start(chain["gateway"], sign_in(chain["identity"], QUICKSTART_EMAIL), chain["model"]):
            print(f"  {line}")
        print("  .venv/bin/python examples/openai_quickstart.py")
        print("\nCtrl-C stops everything.", flush=True)
        stop.wait()
    print("Stopped.")


if __name__ == "__main__":
    main()
