"""Dev as it deploys, on this machine (devtools/local_chain.py: the deploy rehearsal's chain,
with Google's side replaced by named stand-ins). From the repository root:

    make run-local                                          # the model stand-in
    make run-local ARGS="--upstream https://HOST/v1 --model MODEL --api-key-env VAR"
    python -m scripts.local_chain --help

It prints where to open the chat page; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from devtools.local_chain import DEV, PASSWORD, caller_check, local_chain
from services.servicekit import logs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", type=Path, default=DEV, help="environment file (default: environments/dev.toml)")
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
    with local_chain(args.env, args.upstream, args.model, args.api_key_env) as chain:
        backend = args.upstream or "the STAND-IN model server (canned replies, no real model)"
        print(f"Chat page: {chain['frontend']}   (sign in with any email and the password {PASSWORD!r})")
        print(f"Gateway:   {chain['gateway']}   model backend: {backend}")
        print(f"Orchestrator's caller check: {caller_check(chain['environments']['orchestrator'])}")
        print("Ctrl-C stops everything.", flush=True)
        stop.wait()
    print("Stopped.")


if __name__ == "__main__":
    main()
