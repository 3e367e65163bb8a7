"""`make synth`, `make check` and `make cost` install only Pipfile's default category: what they
import must come from it alone, or a fresh clone's first command fails (issue 19)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import packages_distributions

from iac import ROOT


def modules_outside_default() -> set[str]:
    """Top-level modules whose every distribution is locked in another category only."""
    lock = json.loads((ROOT / "Pipfile.lock").read_text())
    default = set(lock["default"])
    others = {name for category, pins in lock.items() if category not in ("_meta", "default") for name in pins}
    foreign = {name.lower().replace("_", "-") for name in others - default}
    return {
        module
        for module, dists in packages_distributions().items()
        if dists and all(d.lower().replace("_", "-") in foreign for d in dists)
    }


def test_the_synth_and_the_offline_tools_import_nothing_beyond_the_default_category() -> None:
    blocked = sorted(modules_outside_default())
    assert {"fastapi", "aiohttp", "pytest"} <= set(blocked)  # the finder below has something to refuse
    probe = textwrap.dedent(
        f"""
        import sys
        from importlib.abc import MetaPathFinder

        BLOCKED = set({blocked!r})

        class OnlyDefault(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"{{name}} is not in Pipfile's default category", name=name)
                return None

        sys.meta_path.insert(0, OnlyDefault())
        from hybrid.lazy_providers import activate
        activate()
        from pathlib import Path
        from hybrid.config import load_environments
        load_environments(sorted(Path("environments").glob("*.toml")))
        import stacks.app, analysis.cost.cli, analysis.advice, analysis.reachability  # noqa: E401, F401
        import scripts.check_reachability, scripts.check_apply_order, scripts.deploy_steps, scripts.up  # noqa: E401, F401
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
