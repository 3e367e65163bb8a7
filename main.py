"""Synthesize the platform: every shipped environment, or the one given with --env.

    python main.py                        # environments/*.toml
    python main.py --env environments/prod.toml
    python main.py cost --env environments/prod.toml [--json] [--requests-per-day N ...]
    python main.py cost diff OLD NEW [--env FILE]  # two environment files, or two git refs
    python main.py advise --profile workload.toml [--json]

A mistake in an environment file ends the run with one message per problem
(file, key, what is allowed) and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from hybrid.config import ConfigError, Environment, load_environments
from hybrid.lazy_providers import activate as activate_lazy_providers

ENVIRONMENTS_DIR = Path(__file__).parent / "environments"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The cost and advise commands read the same files but synthesize nothing; without one
    # of them the command line is exactly what it always was.
    if argv[:1] == ["cost"]:
        from analysis.cost.cli import cost_main

        return cost_main(argv[1:])
    if argv[:1] == ["advise"]:
        from analysis.cost.cli import advise_main

        return advise_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", type=Path, action="append", metavar="FILE", help="environment file (repeatable)")
    args = parser.parse_args(argv)
    paths = args.env or sorted(ENVIRONMENTS_DIR.glob("*.toml"))
    try:
        environments = load_environments(paths)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2

    # After validation, so a bad file costs no provider loading; before any stack is imported,
    # since the loader can only take over provider modules not yet imported.
    activate_lazy_providers()
    from stacks.app import build_app

    started = time.monotonic()
    app = build_app(environments)
    app.synth()
    print(_summary(Path(app.outdir), environments, time.monotonic() - started))
    return 0


def _summary(outdir: Path, environments: list[Environment], seconds: float) -> str:
    """One line on what was written; stack folders this synth did not write are removed first, so
    that a reviewer never reads a stack that no longer exists. Not under the cdktf CLI (which sets
    CDKTF_CONTEXT_JSON): it removes them itself after the app has run, and fails on one already
    gone (measured, cdktf 0.21)."""
    written = json.loads((outdir / "manifest.json").read_text("utf-8"))["stacks"]
    if "CDKTF_CONTEXT_JSON" not in os.environ:
        for stale in sorted((outdir / "stacks").iterdir()):
            if stale.name not in written:
                shutil.rmtree(stale)
    parts = []
    for env in environments:
        stacks = [stack for name, stack in written.items() if name.startswith(f"{env.name}-")]
        resources = sum(_resources(outdir / stack["synthesizedStackPath"]) for stack in stacks)
        parts.append(f"{env.name}: {len(stacks)} stacks, {resources} resources")
    return f"Synthesized {len(written)} stacks to {outdir} in {seconds:.1f} s ({'; '.join(parts)})"


def _resources(stack_file: Path) -> int:
    """The resources of a synthesized stack: JSON (cdk.tf.json), or the HCL `cdktf synth --hcl`
    has the app write (cdk.tf), where each begins a line with `resource "`."""
    text = stack_file.read_text("utf-8")
    if stack_file.suffix == ".json":
        return sum(len(of_kind) for of_kind in json.loads(text).get("resource", {}).values())
    return sum(line.startswith('resource "') for line in text.splitlines())


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        # The reader left early (`main.py cost | head`): not an error of ours to report. Python's
        # recipe: point stdout at devnull so the interpreter's final flush does not raise again
        # (docs.python.org/3/library/signal.html#note-on-sigpipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
