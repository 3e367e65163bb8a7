"""Benchmark: the CPU the gateway spends per request (JWT check + rate limit + validation +
streaming proxy) at 80 concurrent streams, beside nginx proxy_pass's, both in front of the same
upstream, measured in one run; and the latency each adds.

    make bench-gateway                      (installs nginx and wrk with apt if missing)
    make bench-gateway ARGS="--rounds 9 --seconds 20"
    make bench-gateway ARGS="--rounds 1 --seconds 5 --shapes staggered"    (a quick look)

Three paths, each driven by wrk with 80 connections on loopback, each streaming chat
completions one after another from the stand-in model server (20 chunks, 25 ms apart,
like a model streaming tokens):
  direct     client -> upstream stand-in
  nginx      client -> nginx proxy_pass (buffering off, keep-alive) -> upstream
  gateway    client -> gateway (JWT, rate limit, validation, streaming proxy) -> upstream
and two ways of starting the 80 streams:
  staggered  first requests spread over one stream's length, then back to back: the
             steady state of 80 users streaming at once (the target applies here)
  lockstep   all 80 at the same instant; as every stream takes as long, they stay in
             step, so 80 requests arrive together every half second (a burst test)
Paths are interleaved within each round, so that a busy spell of this shared machine falls
on all of them, and each run follows a 2 s warm-up of its own. The table gives the median
over the rounds of requests per second and of p50 and p99 whole-stream latency, what each
proxy adds over direct in the same round (median, then each round), and the proxy's own
CPU time per request (user + system, from /proc, over the measured run only).

Target: in the steady state, the gateway's CPU per request is at most 1.5 times nginx's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Container, Iterable
from pathlib import Path
from statistics import median

import httpx

from devtools.harness import free_port
from services.gateway.dev_issuer import DevIssuer

ROOT = Path(__file__).resolve().parent.parent

CONCURRENCY = 80
TARGET_CPU_RATIO = 1.5  # the gateway's CPU ms/request over nginx proxy_pass's
SHAPES = ("staggered", "lockstep")
STREAM_MS = 20 * 25  # standin-paced: 20 chunks, 25 ms apart
BODY = {"model": "standin-paced", "messages": [{"role": "user", "content": "hello"}], "stream": True}


def start(command: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"{command[0]} did not start")


def uvicorn(target: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env,
        f"http://127.0.0.1:{port}/health",
    )


def nginx(directory: Path, port: int, upstream_port: int) -> subprocess.Popen[bytes]:
    (directory / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {directory}; proxy_temp_path {directory};
    fastcgi_temp_path {directory}; uwsgi_temp_path {directory}; scgi_temp_path {directory};
    upstream model {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
""")
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    return start(
        [binary, "-c", str(directory / "nginx.conf"), "-p", str(directory)],
        os.environ.copy(),
        f"http://127.0.0.1:{port}/health",
    )


def drive(url: str, headers: dict[str, str], shape: str, seconds: int, work: Path) -> dict[str, float]:
    """Requests per second, p50 and p99 (ms) of whole streamed responses, measured by wrk."""
    script = work / "post.lua"
    header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    # wrk asks delay() before every request; only the first one of each connection waits.
    stagger = (
        f"local started = 0\nfunction delay()\n  started = started + 1\n"
        f"  if started <= {CONCURRENCY} then return math.random(0, {STREAM_MS}) end\n  return 0\nend\n"
    )
    script.write_text(
        f"wrk.method = \"POST\"\nwrk.body = '{json.dumps(BODY)}'\n"
        f'wrk.headers["Content-Type"] = "application/json"\n{header_lines}' + (stagger if shape == "staggered" else "")
    )
    output = subprocess.run(
        ["wrk", "-t", "1", "-c", str(CONCURRENCY), "-d", f"{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:  # failed or timed-out streams would flatter p99
        sys.exit(f"{url} answered with errors:\n{output}")
    return {
        "rps": float(_found(r"Requests/sec:\s+([\d.]+)", output)[0]),
        "p50": _ms(output, "50%"),
        "p99": _ms(output, "99%"),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (nginx's worker)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += cpu_seconds(int(child))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return total + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _found(pattern: str, output: str) -> tuple[str, ...]:
    """The groups of ``pattern`` in wrk's output, or exit saying what was missing."""
    match = re.search(pattern, output)
    if match is None:
        sys.exit(f"wrk's output has no {pattern!r}:\n{output}")
    return match.groups()


def _ms(output: str, label: str) -> float:
    value, unit = _found(rf"{label}\s+([\d.]+)(us|ms|s)", output)
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def _start_servers(
    work: Path, issuer: DevIssuer, ports: dict[str, int], processes: dict[str, subprocess.Popen[bytes]]
) -> None:
    """Start the upstream stand-in, the JWKS server, the gateway and nginx into ``processes`` (which
    the caller stops whatever happens, so a failure part-way still stops those started)."""
    # The services' code and the stand-ins, in the servers this starts.
    base_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes["upstream"] = uvicorn("devtools.standins.openai_upstream:create_app", ports["upstream"], base_env)
    processes["jwks"] = start(
        [
            sys.executable,
            "-m",
            "services.gateway.dev_issuer",
            "--dir",
            str(work / "issuer"),
            "serve",
            "--port",
            str(ports["jwks"]),
        ],
        base_env,
        f"http://127.0.0.1:{ports['jwks']}/jwks.json",
    )
    processes["gateway"] = uvicorn(
        "services.gateway.app:main",
        ports["gateway"],
        {
            **base_env,
            "JWKS_URL": f"http://127.0.0.1:{ports['jwks']}/jwks.json",
            "JWT_ISSUER": issuer.issuer,
            "JWT_AUDIENCE": issuer.audience,
            "ORCHESTRATOR_URL": f"http://127.0.0.1:{ports['upstream']}",
            "ORCHESTRATOR_AUTH": "none",
            "RATE_LIMIT_PER_MINUTE": "1000000000",
            "RATE_LIMIT_BURST": "1000000",
            "LOG_LEVEL": "WARNING",
        },
    )
    processes["nginx proxy_pass"] = nginx(work, ports["nginx"], ports["upstream"])


Runs = dict[tuple[str, str], list[dict[str, float]]]


def _measure(
    paths: dict[str, tuple[str, dict[str, str]]],
    processes: dict[str, subprocess.Popen[bytes]],
    args: argparse.Namespace,
    work: Path,
) -> Runs:
    runs: Runs = {(shape, name): [] for shape in args.shapes for name in paths}
    for shape in args.shapes:
        for _ in range(args.rounds):
            for name, (url, headers) in paths.items():
                # Warm-up: the proxies' connections to the upstream have idled out while
                # the other paths ran; caches, JWKS.
                drive(url, headers, shape, 2, work)
                proxy = processes.get(name)
                cpu_before = cpu_seconds(proxy.pid) if proxy else 0.0
                run = drive(url, headers, shape, args.seconds, work)
                if proxy:
                    run["cpu"] = (cpu_seconds(proxy.pid) - cpu_before) * 1000 / (run["rps"] * args.seconds)
                runs[shape, name].append(run)
    return runs


def _report(runs: Runs, paths: Iterable[str], proxied: Container[str], args: argparse.Namespace) -> None:
    print(
        f"{CONCURRENCY} concurrent streams (wrk, loopback), {os.cpu_count()} cores; "
        f"median of {args.rounds} rounds of {args.seconds} s per path"
    )
    for shape in args.shapes:
        print(f"\n{shape} starts")
        print(f"{'path':18} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'CPU ms/req':>11}")
        direct = runs[shape, "direct"]
        for name in paths:
            mine = runs[shape, name]
            plus = {q: median(r[q] - d[q] for r, d in zip(mine, direct, strict=True)) for q in ("p50", "p99")}
            cpu = f"{median(r['cpu'] for r in mine):11.2f}" if name in proxied else f"{'-':>11}"
            print(
                f"{name:18} {median(r['rps'] for r in mine):7.0f} {median(r['p50'] for r in mine):8.1f} "
                f"{median(r['p99'] for r in mine):8.1f} {plus['p50']:8.1f} {plus['p99']:8.1f} {cpu}"
            )
        for name in paths:
            if name != "direct":
                rounds = ", ".join(f"{r['p99'] - d['p99']:.1f}" for r, d in zip(runs[shape, name], direct, strict=True))
                print(f"  {name} +p99 ms by round: {rounds}")
    shape = "staggered" if "staggered" in args.shapes else args.shapes[0]  # the steady state
    gateway, nginx = (median(r["cpu"] for r in runs[shape, name]) for name in ("gateway", "nginx proxy_pass"))
    ratio = gateway / nginx
    print(
        f"\n{shape}: gateway {gateway:.2f} CPU ms/req, nginx proxy_pass {nginx:.2f}: {ratio:.2f}x "
        f"(target <= {TARGET_CPU_RATIO}x: {'OK' if ratio <= TARGET_CPU_RATIO else 'NOT MET'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each path and shape (default 5)")
    parser.add_argument(
        "--shapes",
        type=lambda given: tuple(given.split(",")),
        default=SHAPES,
        help=f"comma-separated, of {', '.join(SHAPES)} (default both); the target is judged on staggered",
    )
    args = parser.parse_args()
    if unknown := set(args.shapes) - set(SHAPES):
        parser.error(f"--shapes: unknown {', '.join(sorted(unknown))}; allowed: {', '.join(SHAPES)}")
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    issuer = DevIssuer(work / "issuer")
    ports = {name: free_port() for name in ("upstream", "jwks", "gateway", "nginx")}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        _start_servers(work, issuer, ports, processes)
        token = {"authorization": f"Bearer {issuer.token('bench')}"}
        paths = {
            "direct": (f"http://127.0.0.1:{ports['upstream']}/v1/chat/completions", {}),
            "nginx proxy_pass": (f"http://127.0.0.1:{ports['nginx']}/v1/chat/completions", {}),
            "gateway": (f"http://127.0.0.1:{ports['gateway']}/v1/chat/completions", token),
        }
        runs = _measure(paths, processes, args, work)
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    _report(runs, paths, processes, args)


if __name__ == "__main__":
    main()
