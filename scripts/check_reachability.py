"""Check that traffic can flow along every edge of the architecture, in the synthesized stacks.

    python -m scripts.check_reachability                          # synthesizes environments/*.toml first
    python -m scripts.check_reachability --env environments/dev.toml
    python -m scripts.check_reachability --synth-dir DIR          # DIR/stacks/<env>-<layer>/cdk.tf.json
    python -m scripts.check_reachability --verbose                # every reason behind every verdict

Without --synth-dir it runs `python main.py` (JSON output) into a temporary directory. For each
environment it prints one line per edge (OK or BLOCKED, with the reasons that block it) and a
summary; the edges are analysis/reachability/edges.py's. Exit status: 0 if every edge is OK, 1
if any is blocked, 2 if the check could not run (an environment that does not synthesize, a
missing or unreadable synth directory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.reachability import EnvironmentFacts, Verdict

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS_DIR = ROOT / "environments"


class CheckError(Exception):
    """The check could not run; the message says why."""


def load_evaluator() -> ModuleType:
    """The checker; it imports no cdktf, so the check costs no provider loading."""
    from analysis import reachability

    return reachability


def read_facts(reachability: ModuleType, path: Path) -> EnvironmentFacts:
    try:
        facts: EnvironmentFacts = reachability.EnvironmentFacts.from_toml(tomllib.loads(path.read_text("utf-8")))
        return facts
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError) as err:
        raise CheckError(f"{path}: cannot read the environment file ({type(err).__name__}: {err})") from None


def synthesize(env_files: list[Path] | None, outdir: Path) -> None:
    """`python main.py` (what `cdktf synth` runs) into ``outdir``, as scripts/bench_synth.py does."""
    command = [sys.executable, "main.py", *(arg for f in env_files or () for arg in ("--env", str(f.resolve())))]
    path = os.pathsep.join(filter(None, (str(ROOT / "node_modules" / ".bin"), os.environ.get("PATH"))))
    env = {**os.environ, "CDKTF_OUTDIR": str(outdir), "PATH": path}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise CheckError(f"synthesis failed (python main.py, exit {result.returncode}):\n{result.stderr.strip()}")


def load_stacks(synth_dir: Path, env: str, layers: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    stacks = {}
    for layer in layers:
        path = synth_dir / "stacks" / f"{env}-{layer}" / "cdk.tf.json"
        if not path.is_file():
            continue
        try:
            stacks[f"{env}-{layer}"] = json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise CheckError(f"{path}: not readable JSON ({err})") from None
    if f"{env}-network" not in stacks:
        raise CheckError(
            f"{synth_dir}: no synthesized stacks for environment {env!r}"
            f" (expected {synth_dir / 'stacks' / f'{env}-network' / 'cdk.tf.json'})"
        )
    return stacks


def report(facts: EnvironmentFacts, verdicts: list[Verdict], *, verbose: bool) -> str:
    """One line per edge (``dev  gateway -> orchestrator  OK``) and a summary; a blocked edge
    also shows the reasons that block it, and ``verbose`` every reason of every edge."""
    width = max(len(v.edge) for v in verdicts)
    lines = [f"{facts.name}: inference on {facts.placement}, self-hosted model {facts.self_hosted_model}"]
    for verdict in verdicts:
        lines.append(f"{facts.name}  {verdict.edge:<{width}}  {'OK' if verdict.ok else 'BLOCKED'}")
        lines += [f"    {'ok' if s.ok else 'NO'}  {s.text}" for s in verdict.steps if verbose or not s.ok]
    blocked = [v.edge for v in verdicts if not v.ok]
    lines.append(
        f"{facts.name}: {len(verdicts) - len(blocked)} of {len(verdicts)} edges OK"
        + (f"; BLOCKED: {', '.join(blocked)}" if blocked else "")
    )
    return "\n".join(lines)


def check(synth_dir: Path, env_files: list[Path], *, verbose: bool = False) -> bool:
    reachability, all_ok = load_evaluator(), True
    for path in env_files:
        facts = read_facts(reachability, path)
        verdicts = reachability.evaluate(load_stacks(synth_dir, facts.name, reachability.LAYERS), facts)
        print(report(facts, verdicts, verbose=verbose), end="\n\n")
        all_ok = all_ok and all(v.ok for v in verdicts)
    return all_ok


def run_check(argv: list[str] | None, doc: str | None, name: str, check: Callable[..., bool]) -> int:
    """The command line both checks share: environment files, a synth directory or a fresh synth,
    and exit 0 (all good), 1 (a finding) or 2 (the check could not run)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--env",
        type=Path,
        action="append",
        metavar="FILE",
        help="environment file (repeatable); default: every file in environments/",
    )
    parser.add_argument(
        "--synth-dir", type=Path, metavar="DIR", help="an existing synth output (JSON) to check instead of synthesizing"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="print the reasons behind every verdict")
    args = parser.parse_args(argv)
    env_files = args.env or sorted(ENVIRONMENTS_DIR.glob("*.toml"))
    try:
        if args.synth_dir:
            if not (args.synth_dir / "stacks").is_dir():
                raise CheckError(f"{args.synth_dir}: no stacks/ directory; synthesize with `python main.py` first")
            ok = check(args.synth_dir, env_files, verbose=args.verbose)
        else:
            with tempfile.TemporaryDirectory(prefix=f"{name}-") as outdir:
                synthesize(args.env, Path(outdir))
                ok = check(Path(outdir), env_files, verbose=args.verbose)
    except CheckError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 2
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    return run_check(argv, __doc__, "check_reachability", check)


if __name__ == "__main__":
    sys.exit(main())
