"""The README's quick start, command by command as `make run-local` prints it: the export lines,
the curl line, then examples/openai_quickstart.py (the file the README includes verbatim)
through the official openai client: a chat, a stream, a file and a batch."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from devtools.deployed_spec import MEMORYSTORE_HOST, SYNTHESIZED_VARIABLE, SynthesizedEnvironment
from devtools.harness import free_port
from iac import ROOT
from scripts.local_chain import GATEWAY_PORT, quick_start

EXAMPLE = ROOT / "examples" / "openai_quickstart.py"


def test_the_readme_shows_the_example_verbatim() -> None:
    assert f"```python\n{EXAMPLE.read_text()}```" in (ROOT / "README.md").read_text()


def test_the_readme_shows_the_lines_as_dev_prints_them() -> None:
    readme = (ROOT / "README.md").read_text()
    printed = quick_start(f"http://127.0.0.1:{GATEWAY_PORT}", "TOKEN", "mistralai/Mistral-7B-Instruct-v0.3")
    for line in printed:
        assert line.replace("TOKEN", "eyJhbGciOiJSUzI1NiIs...") + "\n" in readme


def _read_until_ready(process: subprocess.Popen[str], timeout: float) -> list[str]:
    """stdout's lines up to "Ctrl-C stops everything.", failing with stderr if it never comes."""
    lines: queue.Queue[str] = queue.Queue()

    # A thread, since a pipe's buffered reader may already hold the last lines that select() waits for.
    def forward(stdout: IO[str]) -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))

    assert process.stdout is not None
    threading.Thread(target=forward, args=(process.stdout,), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if seen[-1].startswith("Ctrl-C stops everything."):
            return seen
    process.send_signal(signal.SIGINT)  # not a kill: it stops what it started (PostgreSQL on a fixed port)
    _, err = process.communicate(timeout=90)
    pytest.fail("run-local did not get ready:\n" + "\n".join(seen) + "\n" + err[-4000:])


# run-local reads the run's synthesis of the file (synth_dir) rather than synthesize it again.
@pytest.mark.usefixtures("synth_dir")
@pytest.mark.parametrize("environment", ["environments/dev.toml", "environments/prod.toml"])
def test_quick_start_as_printed(tmp_path: Path, environment: str) -> None:
    gateway_port, frontend_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.local_chain", "--env", environment,
         "--gateway-port", str(gateway_port), "--frontend-port", str(frontend_port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = _read_until_ready(process, timeout=300)
        printed = [line.strip() for line in lines if line.startswith("  ")]
        exports = {}
        for line in printed[:3]:
            export = re.fullmatch(r"export (\w+)=(.*)", line)
            assert export, line
            exports[export[1]] = export[2]
        assert exports["OPENAI_BASE_URL"] == f"http://127.0.0.1:{gateway_port}/v1"
        assert exports["OPENAI_API_KEY"].count(".") == 2, "a JWT from the sign-in stand-in"
        assert f"Chat page: http://127.0.0.1:{frontend_port}" in lines[0]
        curl, run_example = printed[3:]
        shell_env = {**os.environ, **{name: value.strip("'") for name, value in exports.items()}}

        answered = subprocess.run(["bash", "-c", curl], env=shell_env, capture_output=True, text=True, timeout=60)
        assert '"content":"Hello from the stand-in."' in answered.stdout, answered

        assert run_example == ".venv/bin/python examples/openai_quickstart.py"
        ran = subprocess.run(
            ["bash", "-c", run_example], cwd=ROOT, env=shell_env, capture_output=True, text=True, timeout=180
        )
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.splitlines()[:2] == ["chat: Hello from the stand-in.", "stream: Hello from the stand-in."]
        assert re.search(r"^batch: batch_\w+ completed .*completed=3, failed=0, total=3", ran.stdout, re.M), ran.stdout
        assert ran.stdout.count("Hello from the stand-in.") == 5

        # The stand-in's intended drop: the client sees the stream cut off; the log, one line.
        dropped = subprocess.run(
            ["bash", "-c", curl.replace("Hello!", "[standin:die] Hello!").replace("-d '{", "-d '{\"stream\": true, ")],
            env=shell_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "data:" in dropped.stdout, dropped
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=90)
    assert process.returncode == 0
    # It said what it was starting while it started, and nothing went wrong on the way out.
    for step in (
        "... synthesizing",
        "... starting PostgreSQL",
        "... starting the Pub/Sub emulator",
        "... starting the batch worker",
    ):
        assert step in err
    assert "Traceback" not in err, err[-4000:]
    assert err.count("model stand-in: stream dropped on purpose (standin-die)") == 1, err[-4000:]


def test_prod_reads_as_deployed(synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prod's stack ids hold a hyphen of their own (prod-workers-k8s); its name comes from its file.
    The test run's synthesis of every file, which the chains read instead of synthesizing again,
    holds what prod's own synthesis does; a file whose content changed since is synthesized anew."""
    prod = ROOT / "environments" / "prod.toml"
    with monkeypatch.context() as synthesizing:
        synthesizing.setattr(subprocess, "run", None)  # no python main.py: the run's synthesis, read
        shared = SynthesizedEnvironment.synthesize(prod)
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"outdir": str(synth_dir), "sources": {str(prod.resolve()): "an older prod.toml's"}}))
    monkeypatch.setenv(SYNTHESIZED_VARIABLE, str(stale))
    spec = SynthesizedEnvironment.synthesize(prod)  # python main.py --env prod.toml, as run-local
    assert spec.stacks == shared.stacks
    assert spec.name == "prod"
    assert sorted(spec.services()) == ["frontend", "gateway", "orchestrator"]
    assert spec.services()["gateway"].env["REDIS_HOST"] == MEMORYSTORE_HOST


def test_make_run_local_takes_an_environment() -> None:
    def command(*args: str) -> str:
        make = subprocess.run(
            ["make", "-n", "--no-print-directory", "run-local", *args], cwd=ROOT, capture_output=True, text=True
        )
        return [line for line in make.stdout.splitlines() if "scripts.local_chain" in line][-1]

    assert command("ENV=prod").split("scripts.local_chain")[1].split() == ["--env", "environments/prod.toml"]
    assert command().split("scripts.local_chain")[1].split() == []
