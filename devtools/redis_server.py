"""A real Redis server from Debian's package (redis-server), for the gateway's shared rate limit:
on loopback, with AUTH (requirepass, as Memorystore's AUTH), nothing persisted."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from devtools.harness import free_port

MISSING = "redis-server is not installed: make test installs Debian's redis-server (apt-get install redis-server)"


class RedisServer:
    def __init__(self, directory: Path, password: str = "standin-auth-string") -> None:
        binary = shutil.which("redis-server")
        assert binary, MISSING
        self.binary, self.directory, self.password = binary, directory, password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password,
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    @property
    def environment(self) -> dict[str, str]:
        """The gateway's settings that point it at this server."""
        return {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.port), "REDIS_AUTH": self.password}
