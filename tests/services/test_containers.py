"""The service images, checked without a Docker engine (none runs here): one Dockerfile for
every service, multi-stage, slim, non-root, dependencies from the lock, and an entry point
that exists for each service."""

from __future__ import annotations

import importlib
import re

import pytest

from devtools.harness import DOCKERFILE, ROOT, image_command

SERVICES = ["gateway", "orchestrator", "frontend", "worker"]


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile(service):
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert stages == ["python:3.11-slim-bookworm"] * 2
    assert re.search(r"^USER 10001$", text, re.MULTILINE)
    assert "pipenv requirements --categories services --hash" in text
    assert "--require-hashes" in text
    # The build refuses a SERVICE it does not know, and takes each of these.
    assert re.search(r'case "\$SERVICE" in ([\w|]+)\)', text).group(1).split("|") == SERVICES
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (ROOT / source.replace("${SERVICE}", service)).exists(), source
    # The command runs the service's own __main__ (its uvicorn options), which imports.
    command = image_command(service, 8080)
    assert command[1:3] == ["-m", f"services.{service}"]
    importlib.import_module(f"services.{service}.__main__")


def test_dockerignore_sends_only_what_the_images_copy():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[0] == "**"
    copied = {
        source.replace("${SERVICE}", service)
        for service in SERVICES
        for source in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.MULTILINE)
        for source in source.split()
    }
    assert {f"!{source.removesuffix('/')}" for source in copied} <= set(lines)
    assert lines[-1] == "**/__pycache__"  # last, so that no later ! sends one again


def test_the_images_dependency_category_holds_what_the_services_import():
    """The images install the lock's "services" category only: everything the services import
    at run time must be in it (the test environment has more, so an import test would pass)."""
    import ast
    import json

    locked = set(json.loads((ROOT / "Pipfile.lock").read_text())["services"])
    distribution = {
        "jwt": "pyjwt",
        "google": "google-auth",
        "psycopg_pool": "psycopg-pool",
        "pydantic_core": "pydantic-core",
        "pydantic_settings": "pydantic-settings",
        "yaml": "pyyaml",
    }
    own = {"services"}
    imported = set()
    for source in (ROOT / "services").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in own and name not in __import__("sys").stdlib_module_names}
    assert {distribution.get(name, name) for name in third_party} <= locked
    # google.auth.transport.requests (ID and access tokens) needs requests at run time.
    assert "requests" in locked
    # What the images' command line asks uvicorn for.
    assert {"uvloop", "httptools"} <= locked
