"""Benchmark: the latency the gateway adds (JWT check + rate limit + proxy) at 80 concurrent
streams, beside nginx proxy_pass, both in front of the same upstream, measured in one run.

    make bench-gateway        (installs nginx and wrk with apt if missing)

Three paths, each driven for --seconds by wrk with 80 connections on loopback, each
streaming chat completions one after another from the stand-in model server
(20 chunks, 25 ms apart, like a model streaming tokens):
  direct     client -> upstream stand-in
  nginx      client -> nginx proxy_pass (buffering off, keep-alive) -> upstream
  gateway    client -> gateway (JWT, rate limit, validation, streaming proxy) -> upstream
Prints requests per second and p50/p99 of whole-stream latency, and what each proxy
adds over direct. Target: the gateway adds at most 5 ms at p99.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# The services' code and the test stand-ins, here and in the servers this starts.
PATHS = [str(ROOT / folder) for folder in
         ("services", "services/gateway", "services/orchestrator", "tests", "tests/services")]
sys.path[:0] = PATHS

from gateway.dev_issuer import DevIssuer  # noqa: E402
from harness import free_port  # noqa: E402

CONCURRENCY = 80
TARGET_ADDED_P99_MS = 5.0
BODY = {"model": "standin-paced", "messages": [{"role": "user", "content": "hello"}], "stream": True}


def start(command: list[str], env: dict[str, str], url: str) -> subprocess.Popen:
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


def uvicorn(target: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    return start([sys.executable, "-m", "uvicorn", "--factory", target, "--host", "127.0.0.1", "--port", str(port),
                  "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
                 env, f"http://127.0.0.1:{port}/health")


def nginx(directory: Path, port: int, upstream_port: int) -> subprocess.Popen:
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
    return start([binary, "-c", str(directory / "nginx.conf"), "-p", str(directory)], os.environ.copy(),
                 f"http://127.0.0.1:{port}/health")


def drive(url: str, headers: dict[str, str], seconds: float, work: Path) -> tuple[float, float, float]:
    """(requests per second, p50 ms, p99 ms) of whole streamed responses, measured by wrk."""
    script = work / "post.lua"
    header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script.write_text(f'wrk.method = "POST"\nwrk.body = \'{json.dumps(BODY)}\'\n'
                      f'wrk.headers["Content-Type"] = "application/json"\n{header_lines}')
    output = subprocess.run(
        ["wrk", "-t", "1", "-c", str(CONCURRENCY), "-d", f"{int(seconds)}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in output:
        sys.exit(f"{url} answered with errors:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    return rps, _ms(output, "50%"), _ms(output, "99%")


def _ms(output: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    issuer = DevIssuer(work / "issuer")
    ports = {name: free_port() for name in ("upstream", "jwks", "gateway", "nginx")}
    base_env = {**os.environ, "PYTHONPATH": os.pathsep.join(PATHS)}
    processes = []
    try:
        processes.append(uvicorn("standins.openai_upstream:create_app", ports["upstream"], base_env))
        processes.append(start([sys.executable, "-m", "gateway.dev_issuer", "--dir", str(work / "issuer"), "serve",
                                "--port", str(ports["jwks"])], base_env, f"http://127.0.0.1:{ports['jwks']}/jwks.json"))
        processes.append(uvicorn("gateway.app:main", ports["gateway"], {
            **base_env,
            "JWKS_URL": f"http://127.0.0.1:{ports['jwks']}/jwks.json",
            "JWT_ISSUER": issuer.issuer,
            "JWT_AUDIENCE": issuer.audience,
            "ORCHESTRATOR_URL": f"http://127.0.0.1:{ports['upstream']}",
            "ORCHESTRATOR_AUTH": "none",
            "RATE_LIMIT_PER_MINUTE": "1000000000",
            "RATE_LIMIT_BURST": "1000000",
            "LOG_LEVEL": "WARNING",
        }))
        processes.append(nginx(work, ports["nginx"], ports["upstream"]))
        token = {"authorization": f"Bearer {issuer.token('bench')}"}
        paths = {
            "direct": (f"http://127.0.0.1:{ports['upstream']}/v1/chat/completions", {}),
            "nginx proxy_pass": (f"http://127.0.0.1:{ports['nginx']}/v1/chat/completions", {}),
            "gateway": (f"http://127.0.0.1:{ports['gateway']}/v1/chat/completions", token),
        }
        results = {}
        for name, (url, headers) in paths.items():
            drive(url, headers, 2, work)  # warm-up: connections, caches, JWKS
            results[name] = drive(url, headers, args.seconds, work)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    _, direct_p50, direct_p99 = results["direct"]
    print(f"{CONCURRENCY} concurrent streams (wrk), {args.seconds:.0f} s per path, {os.cpu_count()} cores, loopback")
    print(f"{'path':18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8}")
    for name, (rps, p50, p99) in results.items():
        print(f"{name:18} {rps:8.0f} {p50:8.1f} {p99:8.1f} {p50 - direct_p50:8.1f} {p99 - direct_p99:8.1f}")
    added = results["gateway"][2] - direct_p99
    print(f"\ngateway adds {added:.1f} ms at p99 (target <= {TARGET_ADDED_P99_MS}) "
          f"{'OK' if added <= TARGET_ADDED_P99_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
