"""IAM grants in the synthesized stacks: who holds a role on the project or on one resource."""

from __future__ import annotations

from analysis.reachability.synth import Synth


def project_holders(s: Synth, role: str) -> set[str]:
    return {
        s.principal(stack_id, grant.get("member"))
        for stack_id, _, grant in s.all_resources("google_project_iam_member")
        if grant.get("role") == role
    }


def resource_holders(s: Synth, grant_kind: str, field: str, target: tuple[str, str, str], roles: set[str]) -> set[str]:
    """Principals holding one of ``roles`` on the resource ``target`` through ``grant_kind``
    members (``google_<resource>_iam_member``) whose ``field`` names it; a condition's title is
    kept with the principal, as ``principal (if <title>)``."""
    found = set()
    for stack_id, _, grant in s.all_resources(grant_kind):
        if grant.get("role") in roles and s.refers_to(stack_id, grant.get(field), target):
            title = (grant.get("condition") or {}).get("title")
            found.add(s.principal(stack_id, grant.get("member")) + (f" (if {title})" if title else ""))
    return found


def holds(who: str, holders: set[str]) -> bool:
    """Whether ``who`` is among ``holders``, with or without a condition."""
    return any(holder == who or holder.startswith(f"{who} (if ") for holder in holders)
