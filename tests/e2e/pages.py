"""What the browser tests do on the pages, shared by them: sign in on the chat page, and check a
page with axe-core (npm's axe-core, injected into Chromium from node_modules, never shipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from devtools.local_chain import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"


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
