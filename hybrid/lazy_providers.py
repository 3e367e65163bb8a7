"""Load the prebuilt cdktf provider packages lazily, in Python and in the jsii kernel.

Why: each prebuilt provider package eagerly loads every one of its ~1,470
submodules twice over: its Python ``__init__`` imports them all, and its
JavaScript entry point, which the jsii kernel ``require``s, does the same. An app
uses a few dozen. Importing the google and kubernetes packages the ordinary way
costs far more time and memory than synthesizing the whole app.

How, without changing how a stack author imports (``from
cdktf_cdktf_provider_google.sql_user import SqlUser`` stays as it is):

1. Python: a meta path finder serves each package's ``__init__`` without its
   ``from . import <submodule>`` lines. A submodule then loads on its first import,
   and jsii's runtime imports the module of any type the kernel hands back.
2. jsii kernel: the package's jsii tarball is handed to the kernel with
   ``lib/index.js`` rewritten so that each submodule is a getter that ``require``s
   it on first use. The rewritten tarball is built once per installed package,
   keyed by the original's SHA-256, under the user's cache directory.
3. The first load of a rewritten tarball waits (about a second) for the jsii
   kernel to finish its runtime type index of it: jsii builds that index in a
   background worker, a short synth would exit before it is done, and without
   it every run parses the whole ~100 MB assembly.

Both steps check that the package still has the shape they rewrite and raise
``ProviderShapeError`` otherwise, so a future provider release cannot silently
fall back to the slow path or load half a package. ``HYBRID_EAGER_PROVIDERS=1``
turns the mechanism off (the tests use it to prove the output is identical).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.abc
import importlib.machinery
import inspect
import io
import os
import re
import sys
import tarfile
import tempfile
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import IO

# Python package -> jsii assembly name.
LAZY_PACKAGES = {
    "cdktf_cdktf_provider_google": "@cdktf/provider-google",
    "cdktf_cdktf_provider_google_beta": "@cdktf/provider-google-beta",
    "cdktf_cdktf_provider_kubernetes": "@cdktf/provider-kubernetes",
}
EAGER_SWITCH = "HYBRID_EAGER_PROVIDERS"

_PY_SUBMODULE_IMPORT = re.compile(r"^from \. import (\w+)\n", re.MULTILINE)
_PY_JSII_IMPORT = "from ._jsii import *\n"
_JS_INDEX = "package/lib/index.js"
_JS_REQUIRE = re.compile(r'^exports\.(\w+) = require\("(\./[\w-]+)"\);$')
# Every other line an index.js of this shape may hold.
_JS_OTHER = re.compile(
    r'^(|"use strict";|/\*\*| \*.*| \*/|// .*|//# sourceMappingURL=.*'
    r'|Object\.defineProperty\(exports, "__esModule", \{ value: true \}\);'
    r"|exports\.\w+ = (exports\.\w+ = )*void 0;)$"
)


class ProviderShapeError(ImportError):
    """A provider package no longer looks like the one this module rewrites."""

    def __init__(self, package: str, what: str) -> None:
        super().__init__(
            f"{package}: {what}. hybrid/lazy_providers.py cannot load this provider "
            f"release lazily; set {EAGER_SWITCH}=1 to load it the ordinary way and "
            "update the module."
        )


def lazy_init_source(package: str, source: str, package_dir: Path) -> str:
    """The package ``__init__`` without its eager submodule imports."""
    names = _PY_SUBMODULE_IMPORT.findall(source)
    if not names:
        raise ProviderShapeError(package, "its __init__ imports no submodules with 'from . import'")
    if _PY_JSII_IMPORT not in source:
        raise ProviderShapeError(package, "its __init__ does not load its jsii assembly with 'from ._jsii import *'")
    missing = [name for name in names if not (package_dir / name / "__init__.py").is_file()]
    if missing:
        raise ProviderShapeError(package, f"its __init__ imports {missing[:3]} which are not subpackages")
    return _PY_SUBMODULE_IMPORT.sub("", source)


def lazy_index_js(assembly: str, source: str) -> str:
    """``lib/index.js`` with each submodule export turned into a getter that requires it on use."""
    lines = source.split("\n")
    rewritten, exported = [], 0
    for line in lines:
        match = _JS_REQUIRE.match(line)
        if match:
            name, target = match.groups()
            rewritten.append(
                f'Object.defineProperty(exports, "{name}", '
                f'{{ enumerable: true, configurable: true, get: () => require("{target}") }});'
            )
            exported += 1
        elif _JS_OTHER.match(line):
            rewritten.append(line)
        else:
            raise ProviderShapeError(assembly, f"its lib/index.js has a line this module does not know: {line[:120]!r}")
    if not exported:
        raise ProviderShapeError(assembly, "its lib/index.js requires no submodules")
    return "\n".join(rewritten)


# jsii's package cache (its defaultCacheRoot on Linux) and the index it writes there.
_JSII_CACHE_ROOT_VARIABLE = "JSII_RUNTIME_PACKAGE_CACHE_ROOT"
_JSII_RUNTIME_INDEX = ".jsii.runtime-index.v1"
_LAZY_MARK = "get: () => require("
_INDEX_WAIT_SECONDS = 120


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hybrid-platform" / "lazy-jsii"


def lazy_tarball(assembly: str, tarball: str) -> str:
    """Path of the rewritten copy of ``tarball``, built on first use."""
    digest = hashlib.sha256(Path(tarball).read_bytes()).hexdigest()
    target = _cache_root() / digest / Path(tarball).name
    if target.is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        try:
            _rewrite_tarball(assembly, tarball, tmp)
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, target)
    return str(target)


def await_runtime_index(assembly: str, version: str, tarball: str) -> None:
    """Block until jsii has indexed the rewritten package, once per machine."""
    done = Path(tarball + ".indexed")
    if done.exists() or os.environ.get("JSII_RUNTIME_PACKAGE_CACHE", "enabled").lower() != "enabled":
        return
    jsii_root = Path(os.environ.get(_JSII_CACHE_ROOT_VARIABLE) or Path.home() / ".cache/aws/jsii/package-cache")
    deadline = time.monotonic() + _INDEX_WAIT_SECONDS
    while time.monotonic() < deadline:
        for extracted in (jsii_root / assembly / version).glob("*/"):
            index_js = extracted / "lib" / "index.js"
            indexed = (extracted / _JSII_RUNTIME_INDEX).is_file()
            if indexed and index_js.is_file() and _LAZY_MARK in index_js.read_text():
                done.touch()
                return
        time.sleep(0.2)
    raise ProviderShapeError(
        "jsii",
        f"its package cache under {jsii_root} holds no runtime index of {assembly} {version} "
        f"after {_INDEX_WAIT_SECONDS} s",
    )


def _rewrite_tarball(assembly: str, tarball: str, out: IO[bytes]) -> None:
    seen_index = False
    # mtime=0 and level 1: reproducible bytes, and a fast one-off build.
    with (
        tarfile.open(tarball, "r:gz") as src,
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=src.format) as dst,
    ):
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.name == _JS_INDEX:
                if data is None:
                    raise ProviderShapeError(assembly, f"its {_JS_INDEX} is not a file")
                body = lazy_index_js(assembly, data.read().decode("utf-8")).encode("utf-8")
                member.size = len(body)
                data = io.BytesIO(body)
                seen_index = True
            dst.addfile(member, data)
    if not seen_index:
        raise ProviderShapeError(assembly, f"its jsii tarball has no {_JS_INDEX}")


class _LazyInitLoader(importlib.abc.Loader):
    """Runs a provider package's ``__init__`` minus its submodule imports.

    No bytecode is cached: a cached .pyc of the stripped source would be picked up
    by the ordinary import path too.
    """

    def __init__(self, package: str, origin: str) -> None:
        self.package, self.origin = package, origin

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:  # default module creation
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        origin = Path(self.origin)
        source = lazy_init_source(self.package, origin.read_text("utf-8"), origin.parent)
        exec(compile(source, self.origin, "exec"), module.__dict__)


class _LazyPackageFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LAZY_PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        spec.loader = _LazyInitLoader(fullname, spec.origin)
        return spec


def _patch_kernel_load() -> None:
    from jsii._kernel import Kernel

    original = Kernel.load
    if getattr(original, "_hybrid_lazy", False):
        return
    if list(inspect.signature(original).parameters) != ["self", "name", "version", "tarball"]:
        raise ProviderShapeError("jsii", "Kernel.load no longer takes (name, version, tarball)")
    lazy_assemblies = set(LAZY_PACKAGES.values())

    def load(self: Kernel, name: str, version: str, tarball: str) -> None:
        if name not in lazy_assemblies:
            return original(self, name, version, tarball)
        lazy = lazy_tarball(name, tarball)
        original(self, name, version, lazy)
        await_runtime_index(name, version, lazy)

    load.__dict__["_hybrid_lazy"] = True
    Kernel.load = load  # type: ignore[method-assign]  # replacing jsii's method is the point


def activate() -> None:
    """Install lazy loading, unless switched off. Idempotent; call before any provider import."""
    if os.environ.get(EAGER_SWITCH) == "1":
        return
    early = [name for name in LAZY_PACKAGES if name in sys.modules]
    if early and not any(isinstance(f, _LazyPackageFinder) for f in sys.meta_path):
        raise ImportError(f"{early} imported before hybrid.lazy_providers.activate(); import hybrid first")
    _patch_kernel_load()
    if not any(isinstance(f, _LazyPackageFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _LazyPackageFinder())
