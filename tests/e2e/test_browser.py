"""The chat page in a real browser (Debian's Chromium, headless), on the platform as dev
deploys it (devtools/local_chain.py): sign in with Identity Platform's email and password (its
stand-in), a streamed reply, the ledger row in PostgreSQL, a reply cut off halfway, an
expired session, the rate limit, a phone screen. Screenshots land in test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pages import ARTIFACTS, assert_ledger, email, say, sign_in
from playwright.sync_api import Browser, Page, expect

from devtools.local_chain import PASSWORD, LocalChain
from devtools.standins.identity_platform import user_id

# The local chain it runs on (tests/conftest.py's ``chain``): local_chain's keyword arguments.
# Four messages at once, then one every ten seconds: the fifth quick one is refused.
CHAIN: dict[str, object] = {"overrides": {"gateway": {"RATE_LIMIT_BURST": "4", "RATE_LIMIT_PER_MINUTE": "6"}}}


@pytest.fixture
def page(browser: Browser, chain: LocalChain) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.goto(chain["frontend"])
    yield page
    context.close()


def test_sign_in_send_and_watch_the_reply_stream_in(page: Page, chain: LocalChain) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    sign_in(page, "alice")
    say(page, "Hello there [standin:paced]")
    reply = page.locator("#messages li.assistant").last
    expect(reply).to_contain_text("Hello", timeout=10_000)
    partial = reply.inner_text()
    final = "Hello from the stand-in." * 4
    assert partial != final, "the reply appeared all at once, not as it streamed"
    expect(reply).to_have_text(final, timeout=10_000)
    expect(page.locator("#messages li.user").last).to_have_text("Hello there [standin:paced]")
    page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)
    assert_ledger(chain, "alice", [("completed", 20)])


def test_a_reply_the_model_stops_halfway_is_marked_cut_off(page: Page, chain: LocalChain) -> None:
    sign_in(page, "hana")
    say(page, "tell me everything [standin:die]")  # the stand-in drops the stream after two chunks
    expect(page.get_by_role("alert")).to_have_text(
        "The reply was cut off: the model stopped answering. Ask again to continue.", timeout=10_000
    )
    reply = page.locator("#messages li.assistant").last
    expect(reply).to_have_text("Hello from")
    expect(reply).to_have_attribute("aria-label", "Assistant (cut off)")
    expect(reply).to_have_class("assistant incomplete")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    page.screenshot(path=str(ARTIFACTS / "cut-off.png"))
    assert_ledger(chain, "hana", [("upstream_aborted", 2)])


def test_an_expired_session_shows_the_sign_in_prompt(page: Page, chain: LocalChain) -> None:
    sign_in(page, "carol")
    expired = chain["issuer"].token(user_id(email("carol")), ttl=-60)
    page.evaluate("token => sessionStorage.setItem('chat.token', token)", expired)
    say(page, "are you there?")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#sign-in-reason")).to_have_text("Your session has ended. Please sign in again.")


def test_too_many_messages_shows_the_rate_limit_in_plain_words(page: Page) -> None:
    sign_in(page, "bob")
    for index in range(5):
        say(page, f"message {index}")
        expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=10_000)
    expect(page.get_by_role("alert")).to_contain_text("You are sending messages too quickly. Please wait")
    expect(page.get_by_label("Message")).to_have_value("message 4")  # kept, to send again later
    expect(page.locator("#messages li.user")).to_have_count(4)
    page.screenshot(path=str(ARTIFACTS / "rate-limited.png"))


def test_usable_on_a_phone_screen(browser: Browser, chain: LocalChain) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(chain["frontend"])
    sign_in(page, "dana")
    say(page, "hi from my phone")
    expect(page.locator("#messages li.assistant").last).to_contain_text("stand-in", timeout=10_000)
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)
    context.close()


def test_keyboard_only(page: Page) -> None:
    username = page.get_by_label("Email or user name")
    expect(username).to_be_focused()  # the page puts the cursor where to start
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(username).to_be_focused()
    page.keyboard.type(email("erin"))
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_label("Message")).to_be_focused()
    page.keyboard.type("typed without a mouse")
    page.keyboard.press("Enter")
    expect(page.locator("#messages li.assistant").last).to_contain_text("Hello", timeout=10_000)
