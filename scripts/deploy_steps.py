"""The deploy steps (docs/deploying.md), as data: what `make up` runs and what the apply-order check walks.

A step is applied only after every earlier step has finished. Inside a "stacks" step, `cdktf
deploy` applies stacks whose dependencies are met in parallel, so only cdktf's own dependency
graph (manifest.json's `dependencies`) orders them there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hybrid.topology import TOPOLOGY

StepKind = Literal["stacks", "images", "secrets", "job"]


@dataclass(frozen=True)
class Step:
    number: int
    kind: StepKind
    title: str
    # For "stacks": the layers this step deploys ("*" = every stack of the environment that is
    # not yet deployed). Stack ids are <env>-<layer>.
    layers: tuple[str, ...] = ()
    # For "images": the services whose images this step builds (services/Dockerfile's SERVICE),
    # pushed to the environment's registry at its services' image tag.
    images: tuple[str, ...] = ()


DEPLOY_STEPS: tuple[Step, ...] = (
    Step(1, "stacks", "Network (APIs), registry and database", ("network", "registry", "database")),
    Step(
        2,
        "images",
        "Images of every service the environment deploys, built with Cloud Build",
        images=TOPOLOGY.built(),
    ),
    Step(3, "secrets", "Secret versions the stacks reference but never hold"),
    Step(4, "stacks", "Everything else: clusters, inference, workers, services", ("*",)),
    Step(5, "job", "The database bootstrap job, once"),
)


def stacks_of_step(step: Step, env_name: str, all_stacks: list[str], done: set[str]) -> list[str]:
    """The stack ids a "stacks" step deploys, given the stacks earlier steps have deployed."""
    if step.layers == ("*",):
        return [s for s in all_stacks if s.startswith(f"{env_name}-") and s not in done]
    return [f"{env_name}-{layer}" for layer in step.layers if f"{env_name}-{layer}" in all_stacks]
