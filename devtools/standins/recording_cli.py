"""A recording stand-in for the `gcloud` and `cdktf` command lines, for testing `make up`.

Installed on PATH under both names (tests write a wrapper for each, naming it in $STANDIN_TOOL), it appends each call's arguments to
$STANDIN_LOG as a JSON line and answers as the real tool would for what scripts/up.py asks:
whether an image or a secret version exists (kept in $STANDIN_STATE, so a second run sees what
the first made), builds, secret creation, deploys (with an outputs file) and job executions. A
value given on stdin is recorded by its length only, as a real log must never hold it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    tool, args = os.environ["STANDIN_TOOL"], sys.argv[1:]
    state_path = Path(os.environ["STANDIN_STATE"])
    state = json.loads(state_path.read_text()) if state_path.exists() else {"images": [], "secrets": []}
    stdin = "" if sys.stdin.isatty() else sys.stdin.read()
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write(json.dumps({"tool": tool, "args": args, "stdin_chars": len(stdin)}) + "\n")
    code = 0
    if tool == "gcloud" and args[:4] == ["artifacts", "docker", "images", "describe"]:
        code = 0 if args[4] in state["images"] else 1
    elif tool == "gcloud" and args[:2] == ["builds", "submit"]:
        (substitutions,) = [a for a in args if a.startswith("--substitutions=")]
        state["images"].append(dict(kv.split("=", 1) for kv in substitutions.split("=", 1)[1].split(","))["_IMAGE"])
    elif tool == "gcloud" and args[:3] == ["secrets", "versions", "list"]:
        if args[3] in state["secrets"]:
            print("1")
    elif tool == "gcloud" and args[:2] == ["secrets", "create"]:
        state["secrets"].append(args[2])
    elif tool == "cdktf" and args[:1] == ["deploy"]:
        outputs = args[args.index("--outputs-file") + 1]
        stacks = args[args.index("--outputs-file") + 2 :]  # scripts/up.py names the stacks last
        answer = {
            s: {"chat_page_url": f"https://{s.removesuffix('-services')}-frontend-123.us-central1.run.app"}
            for s in stacks
            if s.endswith("-services")
        }
        Path(outputs).write_text(json.dumps(answer))
    state_path.write_text(json.dumps(state))
    return code


if __name__ == "__main__":
    sys.exit(main())
