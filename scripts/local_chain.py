"""The whole chain on this machine: PostgreSQL, the stand-in model server (or a real
OpenAI-compatible URL), the development issuer, orchestrator, gateway and frontend.

    make run-local                                   # with the labelled stand-in model server
    make run-local ARGS="--upstream https://HOST/v1 --model MODEL [--api-key-env VAR]"

It prints where to open the chat page; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for folder in ("services", "services/gateway", "services/orchestrator", "services/frontend", "tests",
               "tests/services"):
    sys.path.insert(0, str(ROOT / folder))

from frontend.app import create_app as create_frontend  # noqa: E402
from frontend.settings import FrontendSettings  # noqa: E402
from gateway.app import create_app as create_gateway  # noqa: E402
from gateway.dev_issuer import DevIssuer, jwks_app  # noqa: E402
from harness import Postgres, Server, free_port, gateway_settings  # noqa: E402
from orchestrator.app import create_app as create_orchestrator  # noqa: E402
from orchestrator.settings import OrchestratorSettings  # noqa: E402
from servicekit import logs  # noqa: E402
from standins.openai_upstream import create_app as create_standin  # noqa: E402

STANDIN_MODEL = "standin-paced"


@contextlib.contextmanager
def local_chain(upstream: str | None = None, model: str = STANDIN_MODEL, api_key_env: str | None = None,
                **gateway_overrides):
    """Start the chain; yields a dict of its URLs, the issuer and the database's conninfo."""
    work = Path(tempfile.mkdtemp(prefix="local-chain-"))
    database = Postgres(work)
    database.start()
    try:
        with contextlib.ExitStack() as stack:
            if upstream is None:
                upstream = stack.enter_context(Server(create_standin())).url + "/v1"
            issuer = DevIssuer(work / "issuer")
            jwks = stack.enter_context(Server(jwks_app(issuer)))
            orchestrator = stack.enter_context(Server(create_orchestrator(OrchestratorSettings.model_validate({
                "backends": {"model": {"kind": "openai", "url": upstream, "api_key_env": api_key_env}},
                "routes": [{"match": "*", "backends": ["model"]}],
            }), conninfo=database.conninfo)))
            frontend_port = free_port()
            frontend_url = f"http://127.0.0.1:{frontend_port}"
            issuer.jwks_url = f"{jwks.url}/jwks.json"
            gateway = stack.enter_context(Server(create_gateway(gateway_settings(
                issuer, orchestrator.url, allowed_origins=frontend_url,
                **{"max_messages": 64, "max_message_chars": 20_000, **gateway_overrides}))))
            stack.enter_context(Server(create_frontend(FrontendSettings(
                gateway_url=gateway.url, default_model=model, auth_mode="dev", dev_issuer_dir=work / "issuer",
            )), port=frontend_port))
            yield {"frontend": frontend_url, "gateway": gateway.url, "orchestrator": orchestrator.url,
                   "issuer": issuer, "conninfo": database.conninfo}
    finally:
        database.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", help="an OpenAI-compatible base URL ending in /v1 (default: the stand-in)")
    parser.add_argument("--model", help="the model name to ask the upstream for")
    parser.add_argument("--api-key-env", help="environment variable holding the upstream's API key")
    args = parser.parse_args()
    if args.upstream and not args.model:
        parser.error("--model is required with --upstream")
    logs.configure("WARNING")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with local_chain(args.upstream, args.model or STANDIN_MODEL, args.api_key_env) as chain:
        backend = args.upstream or "the STAND-IN model server (canned replies, no real model)"
        print(f"Chat page: {chain['frontend']}   (sign in with any user name)")
        print(f"Gateway:   {chain['gateway']}   model backend: {backend}")
        print("Ctrl-C stops everything.", flush=True)
        stop.wait()
    print("Stopped.")


if __name__ == "__main__":
    main()
