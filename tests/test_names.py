"""Every GCP resource name the stacks write comes from ResourceNames, where GCP's rule for it
is checked when the environment loads."""

from __future__ import annotations

from hybrid.config import ResourceNames, load_environment
from iac import ROOT, Json, Stacks

# Where a resource's GCP name sits in its block; record names of the run.app zone are DNS
# names, and the PostgreSQL database's name is a setting (database.database_name).
NAME_KEYS = ("name", "account_id", "repository_id", "secret_id")
NOT_RESOURCE_NAMES = ("google_dns_record_set", "google_sql_database")


def written_names(stacks: dict[str, Json], env: str) -> set[str]:
    found = set()
    for stack_id, stack in stacks.items():
        if not stack_id.startswith(f"{env}-"):
            continue
        for kind, blocks in stack.get("resource", {}).items():
            if not kind.startswith("google_") or kind in NOT_RESOURCE_NAMES:
                continue
            for block in blocks.values():
                found |= {block[key] for key in NAME_KEYS if isinstance(block.get(key), str)}
                found |= {r["range_name"] for r in block.get("secondary_ip_range", ())}
                for interface in (block.get("template", {}).get("vpc_access") or {}).get("network_interfaces", ()):
                    found |= set(interface.get("tags", ()))
    return {name for name in found if "${" not in name}  # a reference names what it refers to


def test_every_name_in_the_synth_is_a_checked_resource_name(env: str, synth_json: Stacks) -> None:
    environment = load_environment(ROOT / "environments" / f"{env}.toml")
    rules = ResourceNames(env, environment.project_id).rules(
        regions=environment.service_regions[1:], replica_region=environment.database.replica_region
    )
    checked = {name for name, _, _ in rules.values()}
    # A secret the operator made and named in the environment file, not a name the stacks build.
    # Likewise the model weights' bucket, which the registry layer makes under the file's name.
    configured = {environment.inference.gke_server.hf_token_secret, environment.inference.gke_server.weights_bucket}

    written = written_names(synth_json, env)

    assert len(written) > 30, written  # the walk found the names at all
    assert written - configured <= checked, sorted(written - configured - checked)
