"""The Cloud Armor policy on every public backend of the edge (its rules: hybrid/armor.py)."""

from __future__ import annotations

import re

from cdktf_cdktf_provider_google.compute_security_policy import (
    ComputeSecurityPolicy,
    ComputeSecurityPolicyAdvancedOptionsConfig,
    ComputeSecurityPolicyRule,
    ComputeSecurityPolicyRuleMatch,
    ComputeSecurityPolicyRuleMatchConfig,
    ComputeSecurityPolicyRuleMatchExpr,
    ComputeSecurityPolicyRulePreconfiguredWafConfig,
    ComputeSecurityPolicyRulePreconfiguredWafConfigExclusion,
    ComputeSecurityPolicyRulePreconfiguredWafConfigExclusionRequestHeader,
    ComputeSecurityPolicyRuleRateLimitOptions,
    ComputeSecurityPolicyRuleRateLimitOptionsRateLimitThreshold,
)
from constructs import Construct

from hybrid.armor import EVERYONE, INTERVAL_SECONDS, ArmorRule, RateLimit, check_rules


class CloudArmorPolicy(Construct):
    """A backend security policy (type CLOUD_ARMOR) of ``rules``, parsing JSON bodies."""

    def __init__(self, scope: Construct, id_: str, *, name: str, project: str, rules: tuple[ArmorRule, ...]) -> None:
        super().__init__(scope, id_)
        check_rules(rules)
        self.policy = ComputeSecurityPolicy(
            self,
            "policy",
            name=name,
            project=project,
            type="CLOUD_ARMOR",
            description="Every public backend of the edge: OWASP SQLi/XSS, a per-IP ban, an Authorization throttle",
            # The chat API's bodies are JSON: parsed, the WAF inspects the values, not the braces and
            # quotes of the structure, which otherwise match signatures (cloud.google.com/armor/docs/content-parsing).
            advanced_options_config=ComputeSecurityPolicyAdvancedOptionsConfig(json_parsing="STANDARD"),
            rule=[_rule(rule) for rule in rules],
        )

    @property
    def id(self) -> str:
        return self.policy.id


def _rule(rule: ArmorRule) -> ComputeSecurityPolicyRule:
    if rule.expression == EVERYONE:
        match = ComputeSecurityPolicyRuleMatch(
            versioned_expr="SRC_IPS_V1", config=ComputeSecurityPolicyRuleMatchConfig(src_ip_ranges=[EVERYONE])
        )
    else:
        match = ComputeSecurityPolicyRuleMatch(expr=ComputeSecurityPolicyRuleMatchExpr(expression=rule.expression))
    waf = None
    if rule.excluded_headers:
        rule_set = re.search(r"'([a-z0-9-]+)'", rule.expression)
        assert rule_set, rule.expression  # an exclusion is only ever made for a WAF rule (checked above)
        waf = ComputeSecurityPolicyRulePreconfiguredWafConfig(
            exclusion=[
                ComputeSecurityPolicyRulePreconfiguredWafConfigExclusion(
                    target_rule_set=rule_set.group(1),
                    request_header=[
                        ComputeSecurityPolicyRulePreconfiguredWafConfigExclusionRequestHeader(
                            operator="EQUALS", value=header
                        )
                        for header in rule.excluded_headers
                    ],
                )
            ]
        )
    return ComputeSecurityPolicyRule(
        priority=rule.priority,
        action=rule.action,
        description=rule.description,
        match=match,
        preconfigured_waf_config=waf,
        rate_limit_options=_rate_limit(rule.rate_limit) if rule.rate_limit else None,
    )


def _rate_limit(limit: RateLimit) -> ComputeSecurityPolicyRuleRateLimitOptions:
    return ComputeSecurityPolicyRuleRateLimitOptions(
        conform_action="allow",
        # 429: what the gateway answers for its own limit, so a client backs off the same way.
        exceed_action="deny(429)",
        rate_limit_threshold=ComputeSecurityPolicyRuleRateLimitOptionsRateLimitThreshold(
            count=limit.per_minute, interval_sec=INTERVAL_SECONDS
        ),
        enforce_on_key="HTTP_HEADER" if limit.header else "IP",
        enforce_on_key_name=limit.header,
        ban_duration_sec=limit.ban_seconds,
    )
