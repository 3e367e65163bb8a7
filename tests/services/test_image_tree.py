"""devtools/image_tree.py: the tree, environment and command of a service's image, read from the
Dockerfile, and the images' Python packages only."""

from __future__ import annotations

import subprocess
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from devtools.image_tree import ImageTree, ImageTreeError, image_tree

DOCKERFILE = """\
FROM python:3.11-slim-bookworm AS dependencies
RUN python -m venv /venv

FROM python:3.11-slim-bookworm
ARG SERVICE
COPY --from=dependencies /venv /venv
COPY pkg/__init__.py /app/pkg/
COPY pkg/${SERVICE} \\
     /app/pkg/${SERVICE}
ENV PATH=/venv/bin:$PATH PYTHONPATH=/app:/app/pkg NAME=${SERVICE} PLAIN=/not/in/the/tree
WORKDIR /app
USER 10001
CMD exec python -m "pkg.$NAME"
"""


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """A build context of its own: a Dockerfile, .dockerignore, a package, and a built venv."""
    for name, text in {
        "Dockerfile": DOCKERFILE,
        ".dockerignore": "**\n!pkg/__init__.py\n!pkg/one\n**/__pycache__\n**/secret.txt\n",
        "Pipfile.lock": "{}",
        "pkg/__init__.py": "",
        "pkg/one/__init__.py": "",
        "pkg/one/__main__.py": "print('one')\n",
        "pkg/one/__pycache__/stale.pyc": "",
        "pkg/one/secret.txt": "",
        "pkg/two/__init__.py": "",
        "venv/.synced": "",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def tree_of(context: Path, service: str = "one", dockerfile: str | None = None) -> AbstractContextManager[ImageTree]:
    if dockerfile is not None:
        (context / "Dockerfile").write_text(dockerfile)
    return image_tree(service, dockerfile=context / "Dockerfile", context=context, venv=context / "venv")


def files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def test_the_tree_holds_what_the_final_stage_copies_as_dockerignore_sends_it(context: Path) -> None:
    with tree_of(context) as tree:
        assert files(tree.root / "app") == {"pkg/__init__.py", "pkg/one/__init__.py", "pkg/one/__main__.py"}
        assert (tree.root / "venv").resolve() == (context / "venv").resolve()
        assert tree.workdir == tree.root / "app"
        root = tree.root
    assert not root.exists()  # removed on leaving


def test_the_environment_points_into_the_tree_and_the_command_is_the_cmd(context: Path) -> None:
    with tree_of(context) as tree:
        assert tree.env["PATH"].startswith(f"{tree.root}/venv/bin:")
        assert tree.env["PYTHONPATH"] == f"{tree.root}/app:{tree.root}/app/pkg"
        assert tree.env["NAME"] == "one"
        assert tree.env["PLAIN"] == "/not/in/the/tree"
        assert tree.cmd == ["/bin/sh", "-c", 'exec python -m "pkg.$NAME"']
        args = tree.popen_args({"NAME": "two", "EXTRA": "x"})
        assert args["env"]["NAME"] == "two" and args["env"]["EXTRA"] == "x"  # the container's, last
        assert args["cwd"] == tree.root / "app"


def test_a_service_the_dockerignore_leaves_out_is_an_error(context: Path) -> None:
    with pytest.raises(ImageTreeError, match="pkg/two is not in the build context"), tree_of(context, "two"):
        pass


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("COPY --from=builder /venv /venv", "only COPY --from=dependencies /venv DEST"),
        ("COPY pkg/*.py /app/", "wildcards"),
        ("ADD pkg /app/pkg", "ADD pkg /app/pkg: not modelled"),
        ("ARG OTHER", "only SERVICE"),
    ],
)
def test_what_it_does_not_model_is_an_error(context: Path, line: str, message: str) -> None:
    with pytest.raises(ImageTreeError, match=message), tree_of(context, dockerfile=DOCKERFILE + line + "\n"):
        pass


def test_without_the_services_venv_it_says_how_to_build_it(context: Path) -> None:
    (context / "venv" / ".synced").unlink()
    with pytest.raises(ImageTreeError, match=r"make \.venv-services/\.synced"), tree_of(context):
        pass


def test_a_services_python_holds_the_services_packages_only() -> None:
    """The lock's "services" category: fastapi is there, the test tools are not."""
    with image_tree("gateway") as tree:
        probe = "import fastapi, importlib.util; print(importlib.util.find_spec('pytest'))"
        result = subprocess.run(**tree.popen_args({}, ["python", "-c", probe]), capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "None"), result.stderr
