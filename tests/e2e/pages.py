"""What the browser tests do on the pages, shared by them: sign in on the chat page, and check a
page with axe-core (npm's axe-core, injected into Chromium from node_modules, never shipped)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
from playwright.sync_api import Page, expect

from devtools.local_chain import PASSWORD, LocalChain
from devtools.standins.identity_platform import user_id

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
ARTIFACTS = ROOT / "test-artifacts"


def email(user: str) -> str:
    return f"{user}@example.com"


def sign_in(page: Page, user: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email or user name").fill(email(user))
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Message")).to_be_visible()


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page as it is now (WCAG 2.x A and AA)."""
    # Evaluated through the DevTools protocol, which the page's Content-Security-Policy does not
    # govern: a script tag of it would be an inline script, which the CSP rightly refuses.
    page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}))
             .violations.filter(v => v.impact === "serious" || v.impact === "critical")
             .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(" "))}))"""
    )
    return found


def say(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def assert_ledger(chain: LocalChain, user: str, expected: list[tuple[Any, ...]]) -> None:
    """The user's ledger rows, (outcome, completion_tokens), become ``expected`` within 10 s."""

    def rows() -> list[tuple[Any, ...]]:
        with psycopg.connect(chain["conninfo"]) as conn:
            return conn.execute(
                "SELECT outcome, completion_tokens FROM usage_ledger WHERE user_id = %s", (user,)
            ).fetchall()

    user = user_id(email(user))  # the subject of the user's Identity Platform token
    deadline = time.monotonic() + 10
    while rows() != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rows() == expected
