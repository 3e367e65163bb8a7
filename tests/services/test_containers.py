"""The service images, checked without a Docker engine (none runs here): one Dockerfile for
every service, multi-stage, slim, non-root, dependencies from the lock, and an entry point
that imports from the files and packages each image holds (devtools/image_tree.py)."""

from __future__ import annotations

import re
import subprocess

import pytest

from devtools.image_tree import DOCKERFILE, ROOT, image_tree
from hybrid.topology import TOPOLOGY

# The topology's services with code in services/: each has an image (make up builds them).
SERVICES = [name.replace("-", "_") for name in TOPOLOGY.built()]


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile(service: str) -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert stages == ["python:3.11-slim-bookworm"] * 2
    assert re.search(r"^USER 10001$", text, re.MULTILINE)
    assert "pipenv requirements --categories services --hash" in text
    assert "--require-hashes" in text
    # The build refuses a missing or malformed SERVICE, and a folder that is not a service (no
    # __main__.py to run); each of these is one.
    assert re.search(r'case "\$SERVICE" in ""\|', text)
    assert 'test -f "/app/services/$SERVICE/__main__.py"' in text
    assert (ROOT / "services" / service / "__main__.py").is_file()
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (ROOT / source.replace("${SERVICE}", service)).exists(), source


# Every module of the service's package, its __main__ too (guarded by __name__).
IMPORT_ALL = """
import importlib, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(module.name)
"""


@pytest.mark.parametrize("service", SERVICES)
def test_every_module_of_a_service_imports_from_its_image(service: str) -> None:
    """Only what its image holds is there: a module of another service's, or a package outside
    the lock's "services" category, is a ModuleNotFoundError here as it would be on Cloud Run."""
    with image_tree(service) as tree:
        # The command runs the service's own __main__ (its uvicorn options).
        assert '-m "services.$SERVICE"' in tree.cmd[-1] and tree.env["SERVICE"] == service
        probe = tree.popen_args({}, ["python", "-c", IMPORT_ALL, f"services.{service}"])
        result = subprocess.run(**probe, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_dockerignore_sends_only_what_the_images_copy() -> None:
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


def test_the_images_dependency_category_holds_what_the_services_import() -> None:
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
        "prometheus_client": "prometheus-client",
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


def test_the_tests_install_the_images_packages_as_the_images_do() -> None:
    """.venv-services (the Makefile), which the tests start every service on, and the images'
    /venv (the Dockerfile's first stage): the lock's "services" category, hash-checked, nothing more."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^\.venv-services/\.synced:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "the Makefile has no .venv-services/.synced target"
    test_target = re.search(r"^test:(.*)$", makefile, re.MULTILINE)
    assert test_target and ".venv-services/.synced" in test_target[1]
    steps = recipe[1].replace("$(PIPENV)", "pipenv")
    for step in ("pipenv requirements --categories services --hash", "--require-hashes --no-deps -r"):
        assert step in DOCKERFILE.read_text() and step in steps, step
