"""Cloud Armor's rules (hybrid/armor.py): what the policy holds, and each mistake refused at synth."""

from __future__ import annotations

import dataclasses

import pytest

from hybrid.armor import DEFAULT_PRIORITY, ArmorRule, ArmorRuleError, armor_rules, check_rules
from hybrid.config import ConfigError, load_environment
from hybrid.config.edge import ArmorSettings
from hybrid.service_contract import gateway_requests_per_user_minute
from iac import ROOT, Stacks
from reachability_helpers import resources
from variants import variant

RULES = armor_rules(ArmorSettings(), 80)


def replaced(index: int, **changes: object) -> tuple[ArmorRule, ...]:
    rules = list(RULES)
    rules[index] = dataclasses.replace(rules[index], **changes)  # type: ignore[arg-type]
    return tuple(rules)


def test_the_policy_on_prod(synth_json: Stacks) -> None:
    (policy,) = resources(synth_json, "prod-edge", "google_compute_security_policy").values()
    assert policy["type"] == "CLOUD_ARMOR" and policy["advanced_options_config"] == {"json_parsing": "STANDARD"}
    by_priority = {rule["priority"]: rule for rule in policy["rule"]}
    assert sorted(by_priority) == [1000, 1001, 1002, 2000, 3000, DEFAULT_PRIORITY]
    sqli, xss = by_priority[1000], by_priority[1001]
    assert by_priority[1002]["match"]["expr"]["expression"] == "evaluatePreconfiguredWaf('cve-canary')"
    assert sqli["match"]["expr"]["expression"] == "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 1})"
    assert xss["match"]["expr"]["expression"] == "evaluatePreconfiguredWaf('xss-v33-stable', {'sensitivity': 1})"
    (exclusion,) = sqli["preconfigured_waf_config"]["exclusion"]
    assert exclusion == {
        "target_rule_set": "sqli-v33-stable",
        "request_header": [{"operator": "EQUALS", "value": "authorization"}],
    }
    throttle, ban = by_priority[2000]["rate_limit_options"], by_priority[3000]["rate_limit_options"]
    assert (by_priority[2000]["action"], throttle["enforce_on_key"], throttle["enforce_on_key_name"]) == (
        "throttle",
        "HTTP_HEADER",
        "authorization",
    )
    assert throttle["rate_limit_threshold"] == {"count": 300, "interval_sec": 60}
    assert (by_priority[3000]["action"], ban["enforce_on_key"], ban["ban_duration_sec"]) == (
        "rate_based_ban",
        "IP",
        600,
    )
    assert ban["rate_limit_threshold"] == {"count": 1200, "interval_sec": 60}
    assert by_priority[DEFAULT_PRIORITY]["match"]["config"]["src_ip_ranges"] == ["*"]


def test_the_gateways_per_user_limit_is_its_rate_plus_its_burst() -> None:
    prod = load_environment(ROOT / "environments" / "prod.toml")
    assert gateway_requests_per_user_minute(prod) == 60 + 20


def test_the_authorization_throttle_must_stay_above_the_gateways_limit() -> None:
    with pytest.raises(
        ArmorRuleError,
        match=r"edge.armor.authorization_throttle_per_minute = 300: must be above the gateway's per-user limit \(300 requests",
    ):
        armor_rules(ArmorSettings(), 300)
    assert armor_rules(ArmorSettings(authorization_throttle_per_minute=301), 300)


def test_an_environment_file_with_the_throttle_below_the_gateway_is_refused_at_load() -> None:
    prod = load_environment(ROOT / "environments" / "prod.toml")
    # The gateway's limit raised in the file is what the throttle is checked against.
    faster_gateway = {"services.gateway.env": {"RATE_LIMIT_PER_MINUTE": "400"}}
    with pytest.raises(
        ConfigError,
        match=r"authorization_throttle_per_minute = 300: must be above the gateway's per-user limit \(420 requests",
    ):
        variant(prod, faster_gateway)
    assert variant(prod, {**faster_gateway, "edge.armor.authorization_throttle_per_minute": 421})


def test_a_priority_used_twice_is_refused() -> None:
    with pytest.raises(ArmorRuleError, match=r"priorities \[1000\] are used twice"):
        check_rules(replaced(1, priority=1000))


def test_an_unknown_expression_is_refused() -> None:
    with pytest.raises(
        ArmorRuleError,
        match=r"expression \"evaluatePreconfiguredWaf\('sqli-v33-stable', \{'sensitivity': 5\}\)\" is not a known one",
    ):
        check_rules(replaced(0, expression="evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 5})"))


def test_an_invalid_action_is_refused() -> None:
    with pytest.raises(ArmorRuleError, match=r"action 'block' is not one of allow, deny\(403\)"):
        check_rules(replaced(0, action="block"))


def test_a_rate_action_needs_its_rate_limit() -> None:
    with pytest.raises(ArmorRuleError, match="a throttle or rate_based_ban action needs a rate limit"):
        check_rules(replaced(3, rate_limit=None))


def test_the_default_rule_is_required_and_alone_matches_everyone() -> None:
    with pytest.raises(ArmorRuleError, match=f"no default rule at priority {DEFAULT_PRIORITY}"):
        check_rules(RULES[:-1])
    with pytest.raises(ArmorRuleError, match="only the default rule"):
        check_rules(replaced(3, expression="*"))


def test_exclusions_only_on_waf_rules() -> None:
    with pytest.raises(ArmorRuleError, match="only a preconfigured WAF rule can exclude headers"):
        check_rules(replaced(3, excluded_headers=("authorization",)))


def test_the_sensitivity_setting_reaches_both_waf_rules() -> None:
    rules = armor_rules(ArmorSettings(waf_sensitivity=2), 80)
    assert [r.expression.endswith("{'sensitivity': 2})") for r in rules[:2]] == [True, True]
