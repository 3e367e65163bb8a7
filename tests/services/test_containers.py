"""The service images, checked without a Docker engine (none runs here): multi-stage, slim,
non-root, dependencies from the lock, and an entry point that exists."""

from __future__ import annotations

import importlib
import re

import pytest

from harness import ROOT


@pytest.mark.parametrize("service", ["gateway", "orchestrator", "frontend"])
def test_dockerfile(service):
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert stages == ["python:3.11-slim-bookworm"] * 2
    assert re.search(r"^USER 10001$", text, re.MULTILINE)
    assert "pipenv requirements --categories services --hash" in text
    assert "--require-hashes" in text
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (ROOT / source).exists(), source
    target = re.search(r"uvicorn --factory (\S+):(\S+)", text)
    module = importlib.import_module(target.group(1))
    assert callable(getattr(module, target.group(2)))
    assert target.group(1) == f"{service}.app"


def test_dockerignore_sends_only_what_the_images_copy():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[0] == "**"
    assert {"!Pipfile", "!Pipfile.lock", "!services/servicekit"} <= set(lines)
