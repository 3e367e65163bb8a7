"""The Cloud Armor policy's rules, and their check at synth (no cdktf: the cost estimate counts them).

Rules are evaluated by priority, lowest first, and the first that matches decides
(cloud.google.com/armor/docs/security-policy-overview#rule-evaluation-order). A rate-based rule's
conform action is `allow`, which ends evaluation: so the WAF rules (deny only) come first, then
the two rate rules, each for its own share of the traffic, then the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hybrid.config.edge import ArmorSettings

# The default rule's priority: the lowest there is (cloud.google.com/armor/docs/security-policy-overview#default_rule).
DEFAULT_PRIORITY = 2147483647
# The OWASP CRS 3.3 rule sets (cloud.google.com/armor/docs/waf-rules).
SQLI, XSS = "sqli-v33-stable", "xss-v33-stable"
# Log4j's JNDI lookups, CVE-2021-44228 (cloud.google.com/armor/docs/waf-rules, "cve-canary"): the
# services are Python, but a log pipeline downstream of them may not be.
LOG4J = "evaluatePreconfiguredWaf('cve-canary')"
AUTHORIZATION = "authorization"
HAS_AUTHORIZATION = f"has(request.headers['{AUTHORIZATION}'])"
# The only expressions a rule may use: a typo in CEL fails at apply, far from its cause.
KNOWN_EXPRESSIONS = (
    r"evaluatePreconfiguredWaf\('(sqli|xss)-v33-stable', \{'sensitivity': [1-4]\}\)",
    re.escape(LOG4J),
    re.escape(HAS_AUTHORIZATION),
    re.escape(f"!{HAS_AUTHORIZATION}"),
)
# src_ip_ranges '*': every request (versioned expression SRC_IPS_V1).
EVERYONE = "*"
# cloud.google.com/armor/docs/security-policy-overview#actions: what a rule may do here.
ACTIONS = ("allow", "deny(403)", "deny(404)", "deny(429)", "deny(502)", "throttle", "rate_based_ban")
# Rate limits are counted over a minute: the settings say "per minute".
INTERVAL_SECONDS = 60


@dataclass(frozen=True)
class RateLimit:
    per_minute: int
    # By IP when None, else by the value of this request header
    # (cloud.google.com/armor/docs/rate-limiting-overview#identifying_clients_for_rate_limiting).
    header: str | None = None
    ban_seconds: int | None = None


@dataclass(frozen=True)
class ArmorRule:
    priority: int
    action: str
    description: str
    expression: str  # CEL, or EVERYONE
    rate_limit: RateLimit | None = None
    # Request headers the rule set does not inspect.
    excluded_headers: tuple[str, ...] = ()


class ArmorRuleError(ValueError):
    """A rule set that would fail at apply, or not do what it says."""


def armor_rules(settings: ArmorSettings, gateway_per_user_minute: float) -> tuple[ArmorRule, ...]:
    """The policy's rules; ``gateway_per_user_minute``: the most one user gets through the gateway
    in a minute, which the Authorization throttle must stay above (the gateway keeps the fine limit)."""
    if settings.authorization_throttle_per_minute <= gateway_per_user_minute:
        raise ArmorRuleError(
            f"edge.armor.authorization_throttle_per_minute = {settings.authorization_throttle_per_minute}: must be "
            f"above the gateway's per-user limit ({gateway_per_user_minute:g} requests a minute: rate_limit_per_minute "
            "+ rate_limit_burst), or the edge would refuse what the gateway allows"
        )
    waf = "{'sensitivity': %d}" % settings.waf_sensitivity
    rules = (
        # An ID token is base64url JSON: some signatures match its bytes, and the gateway checks
        # the token itself (cloud.google.com/armor/docs/rule-tuning#exclude_request_fields_from_inspection).
        ArmorRule(
            1000,
            "deny(403)",
            "OWASP SQL injection; the Authorization header (a JWT) excluded",
            f"evaluatePreconfiguredWaf('{SQLI}', {waf})",
            excluded_headers=(AUTHORIZATION,),
        ),
        ArmorRule(
            1001,
            "deny(403)",
            "OWASP cross-site scripting; the Authorization header (a JWT) excluded",
            f"evaluatePreconfiguredWaf('{XSS}', {waf})",
            excluded_headers=(AUTHORIZATION,),
        ),
        ArmorRule(1002, "deny(403)", "Log4j JNDI lookup (CVE-2021-44228)", LOG4J),
        ArmorRule(
            2000,
            "throttle",
            "Coarse flood stop per Authorization header, above the gateway's per-user limit",
            HAS_AUTHORIZATION,
            rate_limit=RateLimit(settings.authorization_throttle_per_minute, header=AUTHORIZATION),
        ),
        ArmorRule(
            3000,
            "rate_based_ban",
            "Ban a client IP that floods without an Authorization header",
            f"!{HAS_AUTHORIZATION}",
            rate_limit=RateLimit(settings.ip_ban_threshold_per_minute, ban_seconds=settings.ip_ban_seconds),
        ),
        ArmorRule(DEFAULT_PRIORITY, "allow", "Default: allow what no rule above stopped", EVERYONE),
    )
    check_rules(rules)
    return rules


def check_rules(rules: tuple[ArmorRule, ...]) -> None:
    """Priorities unique, expressions known, actions valid, rate limits on rate actions only, one default."""
    problems = []
    priorities = [rule.priority for rule in rules]
    if clash := sorted({p for p in priorities if priorities.count(p) > 1}):
        problems.append(f"priorities {clash} are used twice: each rule needs its own")
    for rule in rules:
        where = f"rule {rule.priority} ({rule.description})"
        if rule.action not in ACTIONS:
            problems.append(f"{where}: action {rule.action!r} is not one of {', '.join(ACTIONS)}")
        if rule.expression == EVERYONE:
            if rule.priority != DEFAULT_PRIORITY:
                problems.append(f"{where}: only the default rule ({DEFAULT_PRIORITY}) matches every request")
        elif not any(re.fullmatch(known, rule.expression) for known in KNOWN_EXPRESSIONS):
            problems.append(f"{where}: expression {rule.expression!r} is not a known one")
        if rule.excluded_headers and not rule.expression.startswith("evaluatePreconfiguredWaf"):
            problems.append(f"{where}: only a preconfigured WAF rule can exclude headers from inspection")
        rate_action = rule.action in ("throttle", "rate_based_ban")
        if rate_action != (rule.rate_limit is not None):
            problems.append(f"{where}: a throttle or rate_based_ban action needs a rate limit, and only it")
    if DEFAULT_PRIORITY not in priorities:
        problems.append(f"no default rule at priority {DEFAULT_PRIORITY}")
    if problems:
        raise ArmorRuleError("Cloud Armor rules: " + "; ".join(problems))
