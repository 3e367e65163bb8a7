"""Real parts for the service tests, the deploy rehearsal and the benchmarks: a private PostgreSQL
cluster and uvicorn servers on loopback (devtools/image_tree.py starts the services as their
images do)."""

from __future__ import annotations

import datetime
import glob
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from services.gateway.dev_issuer import DevIssuer
from services.gateway.settings import GatewaySettings
from services.orchestrator.settings import OrchestratorSettings

PASSWORD = "ledger-test-password"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def certificate_authority() -> tuple[rsa.RSAPrivateKey, str]:
    """A throw-away CA: its key, and its certificate as PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rehearsal-ca-{x509.random_serial_number()}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM).decode()


class Postgres:
    """A throw-away PostgreSQL server (Debian's binaries), password auth over TCP.

    ``tls=True`` serves TLS with a certificate issued by a throw-away CA of its own, as a Cloud SQL
    instance's is by its server CA: ``ca_pem`` is that CA, for clients that verify the server
    (sslmode=verify-ca). ``host``/``port`` choose where it listens (any 127.x address is loopback)."""

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        superuser: str = "postgres",
        tls: bool = False,
    ) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        assert found, "PostgreSQL server binaries are missing: `make test` installs Debian's postgresql package"
        self.bin = Path(found[-1]).parent
        self.directory, self.data = directory, directory / "data"
        self.host, self.port, self.tls = host, port or free_port(), tls
        self.as_owner: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.as_owner = ["runuser", "-u", "postgres", "--"]
            shutil.chown(directory, "postgres")
        password_file = directory / "password"
        password_file.write_text(PASSWORD)
        if self.as_owner:
            shutil.chown(password_file, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            superuser,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={password_file}",
            "-E",
            "UTF8",
        )
        self.ca_pem = ""
        if tls:
            self._write_certificate()
        self.conninfo = f"host={host} port={self.port} user={superuser} dbname=postgres password={PASSWORD}"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def _write_certificate(self) -> None:
        ca_key, self.ca_pem = certificate_authority()
        ca = x509.load_pem_x509_certificate(self.ca_pem.encode())
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rehearsal-postgres")]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(ca_key, hashes.SHA256())
        )
        for file, content in (
            ("server.crt", certificate.public_bytes(serialization.Encoding.PEM)),
            (
                "server.key",
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ),
            ),
        ):
            path = self.data / file
            path.write_bytes(content)
            path.chmod(0o600)  # PostgreSQL refuses a key others can read
            if self.as_owner:
                shutil.chown(path, "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses={self.host} -c fsync=off"
        if self.tls:
            options += " -c ssl=on"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


class Server:
    """A uvicorn server in a thread of its own."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.app = app  # for the tests to read its state
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll until ``predicate()`` returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def cloud_run_env(metadata: Server, **variables: str) -> dict[str, str]:
    """A container's variables on Cloud Run, as far as google-auth looks: pointed at the metadata
    server (stand-in). google-auth reads these when it is imported, hence a process of its own
    (devtools/image_tree.py)."""
    return {
        "GCE_METADATA_HOST": f"127.0.0.1:{metadata.port}",
        "GCE_METADATA_IP": f"127.0.0.1:{metadata.port}",
        **variables,
    }


def last_event(stream: bytes) -> Any:
    """The data of a server-sent event stream's last event: "[DONE]" or the decoded JSON."""
    data = [line[5:].strip() for line in stream.decode().splitlines() if line.startswith("data:")]
    return data[-1] if data[-1] == "[DONE]" else json.loads(data[-1])


def orchestrator_settings(upstream_url: str, **overrides: Any) -> OrchestratorSettings:
    return OrchestratorSettings.model_validate(
        {
            "backends": {
                "standin": {"kind": "openai", "url": f"{upstream_url}/v1"},
                "unreachable": {"kind": "openai", "url": "http://127.0.0.1:9/v1"},
            },
            "routes": [
                {"match": "fallback-*", "backends": ["unreachable", "standin"]},
                {"match": "standin-*", "backends": ["standin"]},
            ],
            "first_byte_timeout_seconds": 2,
            "database_timeout_seconds": 2,
            # In-process tests call it directly, as the gateway's tests' orchestrator; the check
            # itself is tested in tests/services/test_orchestrator_callers.py and the rehearsal.
            "caller_auth": "none",
            **overrides,
        }
    )


class ServedIssuer(DevIssuer):
    """A development issuer whose key set a test serves (``jwks_app``) at ``jwks_url``."""

    jwks_url: str


def gateway_settings(issuer: ServedIssuer, orchestrator_url: str, **overrides: Any) -> GatewaySettings:
    return GatewaySettings.model_validate(
        {
            "jwks_url": issuer.jwks_url,
            "jwt_issuer": issuer.issuer,
            "jwt_audience": issuer.audience,
            "jwks_min_refresh_seconds": 1,
            "orchestrator_url": orchestrator_url,
            "orchestrator_auth": "none",
            "rate_limit_per_minute": 60,
            "rate_limit_burst": 5,
            "max_messages": 8,
            "max_message_chars": 2000,
            "max_body_bytes": 65536,
            **overrides,
        }
    )
