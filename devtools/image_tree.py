"""A service's image, as far as the tests need it, without a Docker engine: the files its final
stage holds, laid out in a temporary directory standing for the image's /, its environment and
its command. Everything is read from services/Dockerfile (the final stage's ARG, COPY, ENV,
WORKDIR and CMD) and .dockerignore, so a COPY the Dockerfile lacks is a module the service cannot
import here either. The Python it runs is .venv-services, the lock's "services" category
installed as the Dockerfile's first stage installs it (`make .venv-services/.synced`)."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # the build context
DOCKERFILE = ROOT / "services" / "Dockerfile"
SERVICES_VENV = ROOT / ".venv-services"
# What a process takes from this machine rather than from the image: where home and temporary
# files are, the locale.
HOST_VARIABLES = ("HOME", "LANG", "TMPDIR")


class ImageTreeError(Exception):
    """The Dockerfile says something this module does not model, or the tree cannot be built."""


@dataclass(frozen=True)
class ImageTree:
    service: str
    root: Path  # stands for the image's /
    env: dict[str, str]  # the image's ENV, its paths moved under root
    workdir: Path
    # Exec form; a shell-form CMD is ["/bin/sh", "-c", line], as Docker runs it
    # (docs.docker.com/reference/dockerfile/#shell-and-exec-form).
    cmd: list[str]

    def popen_args(self, variables: Mapping[str, str], command: Sequence[str] | None = None) -> dict[str, Any]:
        """Keyword arguments for subprocess.Popen or run: the image's CMD (or ``command``, as a
        Cloud Run job's override, looked up on the image's PATH), in its WORKDIR, with its
        environment and then ``variables`` (the container's)."""
        env = {name: os.environ[name] for name in HOST_VARIABLES if name in os.environ}
        env.update(self.env)
        env.update(variables)
        args = list(command or self.cmd)
        program = shutil.which(args[0], path=env.get("PATH"))
        if program is None:
            raise ImageTreeError(f"{self.service}: {args[0]!r} is not on the image's PATH ({env.get('PATH')})")
        return {"args": [program, *args[1:]], "env": env, "cwd": self.workdir}


@contextlib.contextmanager
def image_tree(
    service: str, *, dockerfile: Path = DOCKERFILE, context: Path = ROOT, venv: Path = SERVICES_VENV
) -> Iterator[ImageTree]:
    """The tree of ``service``'s image (the Dockerfile's SERVICE build argument), removed on exit."""
    if not (venv / ".synced").exists():
        raise ImageTreeError(
            f"{venv} is missing or half-built: `make .venv-services/.synced` installs the images' packages "
            "(`make test` does it first)"
        )
    if (context / "Pipfile.lock").stat().st_mtime > (venv / ".synced").stat().st_mtime:
        raise ImageTreeError(f"{venv} is older than Pipfile.lock: `make .venv-services/.synced` reinstalls it")
    root = Path(tempfile.mkdtemp(prefix=f"image-{service}-"))
    try:
        yield _build(service, _final_stage(dockerfile), root, context, venv)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def image_process(
    service: str,
    variables: Mapping[str, str],
    *,
    stop_seconds: float = 15,
    **popen: Any,
) -> Iterator[subprocess.Popen[bytes]]:
    """``service`` started from its image's tree as the image starts it, with ``variables``; on
    exit SIGTERM, SIGKILL after ``stop_seconds``, then the tree removed. ``popen``:
    subprocess.Popen's other arguments (stdout, ...)."""
    with image_tree(service) as tree:
        process = subprocess.Popen(**tree.popen_args(variables), **popen)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=stop_seconds)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    """The instructions after the last FROM, as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    starts = [n for n, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    if not starts:
        raise ImageTreeError(f"{dockerfile}: no FROM")
    return instructions[starts[-1] + 1 :]


def _build(service: str, stage: list[tuple[str, str]], root: Path, context: Path, venv: Path) -> ImageTree:
    arguments: dict[str, str] = {}
    env: dict[str, str] = {}
    workdir, cmd = root, None
    for keyword, text in stage:
        if keyword == "ARG":
            name = text.split("=", 1)[0]
            if name != "SERVICE":
                raise ImageTreeError(f"ARG {name}: only SERVICE is given a value here")
            arguments[name] = service
            continue
        text = _substitute(text, arguments)
        if keyword == "COPY":
            _copy(text, root, context, venv)
        elif keyword == "ENV":
            for assignment in shlex.split(text):
                name, separator, value = assignment.partition("=")
                if not separator:
                    raise ImageTreeError(f"ENV {text}: write ENV NAME=VALUE")
                env[name] = _relocate(value, root, env)
        elif keyword == "WORKDIR":
            workdir = _inside(root, text)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "CMD":
            cmd = json.loads(text) if text.startswith("[") else ["/bin/sh", "-c", text]
        elif keyword not in ("RUN", "USER", "EXPOSE"):  # the build's own checks, and nothing a test runs
            raise ImageTreeError(f"{keyword} {text}: not modelled by devtools/image_tree.py")
    if cmd is None:
        raise ImageTreeError("the final stage has no CMD")
    return ImageTree(service, root, env, workdir, cmd)


def _substitute(text: str, arguments: Mapping[str, str]) -> str:
    for name, value in arguments.items():
        text = text.replace("${%s}" % name, value)
    return text


def _copy(text: str, root: Path, context: Path, venv: Path) -> None:
    words = text.split()
    options = [word for word in words if word.startswith("--")]
    *sources, destination = [word for word in words if not word.startswith("--")]
    if options:
        # The dependencies stage builds a virtualenv; here it is the one the Makefile built the same way.
        if options != ["--from=dependencies"] or sources != ["/venv"]:
            raise ImageTreeError(f"COPY {text}: only COPY --from=dependencies /venv DEST is modelled")
        target = _inside(root, destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(venv, target_is_directory=True)
        return
    ignore = _dockerignore(context)
    for source in sources:
        if any(character in source for character in "*?[$"):
            raise ImageTreeError(f"COPY {text}: wildcards and variables other than ARGs are not modelled")
        path = context / source
        if not path.exists() or ignore(source):
            raise ImageTreeError(f"COPY {text}: {source} is not in the build context (or .dockerignore leaves it out)")
        # A directory's contents go into the destination, not the directory itself
        # (docs.docker.com/reference/dockerfile/#copy).
        if path.is_dir():
            _copy_tree(path, _inside(root, destination), context, ignore)
        elif destination.endswith("/"):
            target = _inside(root, destination) / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        else:
            raise ImageTreeError(f"COPY {text}: a file is copied into a directory (DEST ending in /) here")


def _copy_tree(source: Path, target: Path, context: Path, ignore: Callable[[str], bool]) -> None:
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(context).as_posix()
        if ignore(relative):
            continue
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def _dockerignore(context: Path) -> Callable[[str], bool]:
    """Whether .dockerignore keeps a path (relative to the context) out of the build context: the
    last pattern that matches it or a folder above it decides, ! sending it after all
    (docs.docker.com/build/concepts/context/#dockerignore-files)."""
    patterns = [line.strip() for line in (context / ".dockerignore").read_text().splitlines()]
    patterns = [pattern for pattern in patterns if pattern and not pattern.startswith("#")]

    def ignored(relative: str) -> bool:
        parts = relative.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        verdict = False
        for pattern in patterns:
            keep = pattern.startswith("!")
            if any(fnmatch.fnmatchcase(prefix, pattern.removeprefix("!")) for prefix in prefixes):
                verdict = not keep
        return verdict

    return ignored


def _relocate(value: str, root: Path, env: Mapping[str, str]) -> str:
    """An ENV value with each absolute path the tree holds moved under ``root``; $NAME is the
    value set so far, or this machine's (the base image's PATH is where python would be)."""
    parts = []
    for part in value.split(":"):
        if part.startswith("$"):
            name = part.strip("${}")
            parts.append(env.get(name, os.environ.get(name, "")))
        elif part.startswith("/") and (root / part.strip("/").split("/")[0]).exists():
            parts.append(str(_inside(root, part)))
        else:
            parts.append(part)
    return ":".join(parts)


def _inside(root: Path, path: str) -> Path:
    return root / path.strip("/")
