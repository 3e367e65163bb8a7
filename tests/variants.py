"""Variants of the shipped environments, built from the typed settings rather than by editing
file text, and checked exactly as a loaded file is.

    gpu = variant(DEV_ON_CLOUD_RUN, {"name": "gpu", "inference.cloud_run.secrets": {"HF_TOKEN": "t"}})

Each dotted key is set with ``model_copy(update=...)`` on its own table, level by level; as
model_copy checks nothing, the whole Environment is then validated again from its data, as a
file's is, service contract included. A stack test that needs the CLI to synthesize a variant
writes it out rendered from the model (``write_environment``, ``synthesize``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from hybrid.config import Environment, load_environment, parse_environment
from iac import ROOT, run_main

DEV_ENV = load_environment(ROOT / "environments" / "dev.toml")
Model = TypeVar("Model", bound=BaseModel)


def variant(base: Environment, updates: Mapping[str, Any]) -> Environment:
    """``base`` with each dotted key set to its value (plain data, as a file would give it)."""
    for dotted, value in updates.items():
        base = _with(base, dotted.split("."), value)
    # warnings=False: a value given as plain data (a CIDR as text, a table as a dict) is
    # dumped as it is, then validated like a file's.
    return parse_environment(base.model_dump(mode="json", warnings=False))


def _with(table: Model, path: list[str], value: Any) -> Model:
    key, *rest = path
    if key not in type(table).model_fields:
        raise KeyError(f"{type(table).__name__} has no setting {key!r}; allowed: {', '.join(type(table).model_fields)}")
    if rest:
        inner = getattr(table, key)
        if not isinstance(inner, BaseModel):
            raise TypeError(f"{key} is {inner!r}, not a table: set it whole, as a dict")
        value = _with(inner, rest, value)
    return table.model_copy(update={key: value})


# dev with its model on a Cloud Run GPU instead of GKE, which connector mode does not front
# (docs/network-egress.md): with Direct VPC egress, as before dev used the connector.
DEV_ON_CLOUD_RUN = variant(
    DEV_ENV,
    {
        "network.egress": "direct",
        "network.run_cidr": "10.8.0.0/24",
        "network.connector_cidr": None,
        "network.proxy_only_cidr": None,
        "network.internal_lb_address": None,
        "inference.placement": "cloud_run",
        "inference.gke": None,
        "inference.cloud_run": {"model": "google/gemma-3-4b-it", "zonal_redundancy": False},
    },
)


# dev's GKE pool spilling to the same model on a Cloud Run GPU ([inference] spill_to = "cloud_run"),
# with Direct VPC egress: connector mode fronts only the orchestrator.
DEV_SPILL_TO_CLOUD_RUN = variant(
    DEV_ENV,
    {
        "network.egress": "direct",
        "network.run_cidr": "10.8.0.0/24",
        "network.connector_cidr": None,
        "network.proxy_only_cidr": None,
        "network.internal_lb_address": None,
        "inference.spill_to": "cloud_run",
        "inference.cloud_run": {"model": "mistralai/Mistral-7B-Instruct-v0.3", "zonal_redundancy": False},
    },
)


def write_environment(env: Environment, path: Path) -> Path:
    """``env`` as an environment file the CLI reads back as the same settings."""
    path.write_text(toml_text(env.model_dump(mode="json", exclude_none=True)))
    if load_environment(path) != env:
        raise AssertionError(f"{path} does not read back as the environment it was written from")
    return path


def synthesize(env: Environment, workdir: Path) -> dict[str, dict[str, Any]]:
    """``env``'s stacks by id, as ``python main.py --env FILE`` writes them."""
    config = write_environment(env, workdir / f"{env.name}.toml")
    result = run_main(workdir / "out", "--env", str(config))
    assert result.returncode == 0, result.stderr
    return {p.name: json.loads((p / "cdk.tf.json").read_text()) for p in (workdir / "out" / "stacks").iterdir()}


def toml_text(data: Mapping[str, Any]) -> str:
    """Settings data (``model_dump(mode="json")``, or a copy with a mistake in it) as TOML."""
    return "".join(f"{line}\n" for line in _toml(data))


def _toml(table: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    # Dotted keys (TOML 1.0): every value on its own line, no table headers to order.
    for key, value in table.items():
        dotted = prefix + (key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key))
        if isinstance(value, dict) and value:
            yield from _toml(value, f"{dotted}.")
        else:
            # A JSON string, number, boolean or array of them is the same TOML value.
            yield f"{dotted} = {'{}' if value == {} else json.dumps(value)}"
