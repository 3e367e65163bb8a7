"""The chat page's features in Chromium, on the platform as dev deploys it (devtools/local_chain.py):
the model picker, Markdown rendering (and a hostile model's output left inert), the
Content-Security-Policy, stopping an answer and what the ledger charges for it, the quota meter
and GET /v1/usage, conversations kept in the browser, the context bound, and axe-core's check
at a desktop and a phone size. The screenshots the README shows land in docs/screenshots/."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pages import ARTIFACTS, SCREENSHOTS, assert_ledger, email, say, serious_violations, sign_in
from playwright.sync_api import Browser, BrowserContext, Error, Locator, Page, expect

from devtools.local_chain import LocalChain
from devtools.standins.identity_platform import user_id
from devtools.standins.openai_upstream import CODE

DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
# The stand-in's short answer, chunk by chunk: one chunk is one token in its usage and in the
# orchestrator's count of a stream stopped early.
STANDIN_PIECE = re.compile(r"Hello| from| the| stand-in|\.")


# The local chain it runs on (tests/conftest.py's ``chain``): local_chain's keyword arguments.
# dev as it deploys; the deploy rehearsal runs on the same chain.
CHAIN: dict[str, object] = {}


def open_page(browser: Browser, chain: LocalChain, **options: Any) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport=options.pop("viewport", DESKTOP), **options)
    page = context.new_page()
    page.goto(chain["frontend"])
    return context, page


@pytest.fixture
def page(browser: Browser, chain: LocalChain) -> Iterator[Page]:
    context, page = open_page(browser, chain)
    yield page
    context.close()


def answer(page: Page) -> Any:
    """The last answer, once it has finished streaming."""
    reply = page.locator("#messages li.assistant").last
    expect(reply).to_be_visible(timeout=10_000)
    expect(reply).not_to_have_attribute("aria-busy", "true", timeout=15_000)
    return reply


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def listed_models(chain: LocalChain, user: str) -> list[dict[str, Any]]:
    token = chain["issuer"].token(user_id(email(user)))
    answer = httpx.get(f"{chain['gateway']}/v1/models", headers={"authorization": f"Bearer {token}"}, timeout=10)
    models: list[dict[str, Any]] = answer.json()["data"]
    return models


def test_the_picker_lists_the_gateways_models_with_where_they_run(page: Page, chain: LocalChain) -> None:
    sign_in(page, "picker")
    models = {m["id"]: m for m in listed_models(chain, "picker")}
    assert models[chain["model"]]["owned_by"] == "self-hosted"
    assert models[chain["model"]]["max_model_len"] == 8192  # dev's [inference.gke] max_model_len
    assert models["google/*"]["owned_by"] == "vertex"
    picker = page.get_by_label("Model", exact=True)
    expect(picker.locator("option")).to_have_text(
        [f"{chain['model']} — self-hosted", "google/… (any model under it) — Vertex AI"]
    )
    expect(picker).to_have_value(chain["model"])
    expect(page.locator("#model-kind")).to_have_text("Self-hosted on the platform's GPUs; reads at most 8,192 tokens.")
    # A pattern asks for the model's name under it.
    picker.select_option("google/*")
    expect(page.get_by_label("Model name")).to_have_value("google/")
    expect(page.locator("#model-kind")).to_have_text(
        "Runs on Vertex AI; context length not published: the whole conversation is sent."
    )
    say(page, "which model?")
    expect(page.get_by_role("alert")).to_have_text("Name the model to use: one under google/.")
    expect(page.get_by_label("Model name")).to_be_focused()
    picker.select_option(chain["model"])
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as sent:
        say(page, "Hello there [standin:paced]")
    assert (sent.value.post_data_json or {})["model"] == chain["model"]
    expect(answer(page)).to_have_text("Hello from the stand-in." * 4)
    shot(page, "chat.png")


def test_markdown_renders_as_it_streams_with_a_copy_button(browser: Browser, chain: LocalChain) -> None:
    context, page = open_page(browser, chain, permissions=["clipboard-read", "clipboard-write"])
    sign_in(page, "coder")
    # Whether a heading was already rendered while the answer was still streaming.
    page.evaluate(
        """() => new MutationObserver(() => {
            if (document.querySelector('#messages li.assistant[aria-busy="true"] h4')) window.__renderedEarly = true;
        }).observe(document.getElementById('messages'), {subtree: true, childList: true})"""
    )
    say(page, "how do I reverse a list? [standin:code]")
    reply = answer(page)
    assert page.evaluate("window.__renderedEarly") is True
    expect(reply.get_by_role("heading", name="Reversing a list")).to_be_visible()
    expect(reply.locator(":not(pre) > code")).to_have_text(["reversed()", "list.reverse()"])
    expect(reply.locator("strong")).to_have_text("slice")
    expect(reply.locator("em")).to_have_text("in place")
    expect(reply.locator("ol > li")).to_have_count(2)
    code = CODE.split("```python\n")[1].split("\n```")[0]
    expect(reply.locator("pre code")).to_have_text(code)
    expect(reply.locator(".code-language")).to_have_text("python")
    copy = reply.get_by_role("button", name="Copy python to the clipboard")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == code
    shot(page, "code.png")
    context.close()


PWNED = "window.__pwned"


def assert_inert(page: Page) -> None:
    """Nothing of the hostile answer can run: no script, frame, image or object, no event
    handler, no link but to http(s); and none of its payloads has run."""
    found = page.evaluate(
        """() => {
            const root = document.getElementById('messages');
            return {
                elements: [...root.querySelectorAll('script, iframe, img, object, embed, svg, style')].map(e => e.tagName),
                handlers: [...root.querySelectorAll('*')].flatMap(
                    e => [...e.attributes].filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name)),
                links: [...root.querySelectorAll('[href], [src]')].map(e => e.getAttribute('href') || e.getAttribute('src')),
                pwned: window.__pwned,
            };
        }"""
    )
    assert found == {"elements": [], "handlers": [], "links": ["https://example.com/docs"], "pwned": None}


def test_hostile_model_output_is_shown_as_text_and_never_runs(browser: Browser, chain: LocalChain) -> None:
    # Without the CSP: the renderer alone must keep the payloads inert.
    context, page = open_page(browser, chain, bypass_csp=True)
    sign_in(page, "mallory")
    say(page, "write me a report [standin:hostile]")
    reply = answer(page)
    expect(reply.locator("pre code")).to_have_text('<script>window.__pwned = "code"</script>')
    expect(reply).to_contain_text('<script>window.__pwned = "script"</script>')
    expect(reply).to_contain_text("<img src=x onerror=\"window.__pwned = 'onerror'\">")
    expect(reply.get_by_role("heading")).to_have_text('Report <script>window.__pwned = "heading"</script>')
    # The javascript: link is its text, not a link; the https one is a link that opens apart.
    expect(reply.get_by_role("link")).to_have_count(1)
    expect(reply.get_by_role("link", name="a real link")).to_have_attribute("rel", "noopener noreferrer nofollow")
    reply.get_by_text("click for details").click()
    reply.get_by_text("image: image").hover()
    assert_inert(page)
    # Rendered again from the browser's storage after a reload: still inert.
    page.reload()
    expect(answer(page)).to_contain_text("anchor")
    assert_inert(page)
    context.close()


def test_the_page_is_served_with_a_csp_that_forbids_inline_scripts(browser: Browser, chain: LocalChain) -> None:
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(chain["frontend"])
    assert response is not None
    policy = dict(
        directive.strip().split(" ", 1) for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert (policy["object-src"], policy["base-uri"], policy["frame-ancestors"]) == ("'none'", "'none'", "'none'")
    assert chain["gateway"] in policy["connect-src"].split()
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    with contextlib.suppress(Error):  # Playwright may report the refusal, or not
        page.add_script_tag(content="window.__inline = 1")
    assert page.evaluate("window.__inline") is None  # the browser refused the inline script
    context.close()


def test_stop_ends_the_answer_and_the_ledger_charges_what_reached_the_page(page: Page, chain: LocalChain) -> None:
    sign_in(page, "stopper")
    say(page, "tell me at length [standin:long]")  # 200 chunks, 0.4 s apart
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible(timeout=10_000)
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    # Stop right after the eighth chunk arrived, while the ninth is 0.4 s away: a chunk the
    # orchestrator had sent but the page not yet read when Stop was pressed would be charged too.
    page.wait_for_function(
        """([pattern, n]) => (document.querySelector('#messages li.assistant:last-child')?.textContent
                              .match(new RegExp(pattern, 'g')) || []).length >= n""",
        arg=[STANDIN_PIECE.pattern, 8],
        polling="raf",
    )
    stop.click()
    reply = page.locator("#messages li.assistant").last
    expect(reply).to_have_class("assistant stopped")
    expect(reply).to_have_attribute("aria-label", "Assistant (stopped)")
    expect(stop).to_be_hidden()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_label("Message")).to_be_focused()
    page.wait_for_timeout(1000)  # chunks still on their way would show here
    delivered = len(STANDIN_PIECE.findall(reply.text_content() or ""))
    assert 8 <= delivered < 200
    # The orchestrator saw the client leave: the row is client_aborted within seconds (the
    # whole answer would take 80), charged the chunks that reached the page.
    assert_ledger(chain, "stopper", [("client_aborted", delivered)])
    # And the quota meter says so.
    expect(page.locator("#quota-text")).to_have_text(f"{delivered} of 1,000,000 (renews at midnight UTC)")
    shot(page, "stop.png")


def test_escape_stops_an_answer_from_the_keyboard(page: Page) -> None:
    sign_in(page, "escaper")
    say(page, "tell me at length [standin:long]")
    reply = page.locator("#messages li.assistant").last
    expect(reply).to_contain_text("Hello from", timeout=10_000)
    page.keyboard.press("Escape")
    expect(reply).to_have_class("assistant stopped")
    expect(page.get_by_label("Message")).to_be_focused()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()


def test_the_quota_meter_counts_each_answer_and_usage_is_the_callers_own(page: Page, chain: LocalChain) -> None:
    sign_in(page, "metered")
    meter = page.get_by_label("Tokens today")
    expect(meter).to_have_attribute("value", "0")
    expect(meter).to_have_attribute("max", "1000000")
    say(page, "count these four words")
    answer(page)
    # The stand-in reports the prompt's four words and its answer's five tokens.
    expect(meter).to_have_attribute("value", "9")
    expect(page.locator("#quota-text")).to_have_text("9 of 1,000,000 (renews at midnight UTC)")
    shot(page, "quota.png")
    url = f"{chain['gateway']}/v1/usage"
    assert httpx.get(url, timeout=10).status_code == 401
    other = chain["issuer"].token(user_id(email("nosy")))
    theirs = httpx.get(
        url,
        params={"user": user_id(email("metered"))},
        headers={"authorization": f"Bearer {other}", "x-user-id": user_id(email("metered"))},
        timeout=10,
    )
    assert theirs.json()["used_tokens"] == 0


def conversation_titles(page: Page) -> Locator:
    """The list's titles, to expect (which waits for the page to draw them after a load)."""
    return page.locator("#conversation-list button.open")


def test_conversations_survive_a_reload_and_can_be_renamed_and_deleted(page: Page, chain: LocalChain) -> None:
    sign_in(page, "historian")
    say(page, "first topic")
    answer(page)
    page.get_by_role("button", name="New conversation").click()
    expect(page.get_by_label("Message")).to_be_focused()
    expect(page.locator("#messages li")).to_have_count(0)
    say(page, "second topic")
    answer(page)
    page.get_by_role("button", name="New conversation").click()
    say(page, "third topic")
    answer(page)
    expect(conversation_titles(page)).to_have_text(["third topic", "second topic", "first topic"])
    page.reload()
    expect(page.locator("#conversation-list li")).to_have_count(3)
    expect(page.locator("#messages li.user")).to_have_text(["third topic"])
    page.get_by_role("button", name="first topic").click()
    expect(page.get_by_role("heading", name="first topic")).to_be_visible()
    expect(page.locator("#messages li")).to_have_text(["first topic", "Hello from the stand-in."])
    # Rename, by keyboard: the name's box takes the focus, Enter keeps it, focus returns.
    page.locator("#conversation-list li", has_text="first topic").get_by_role("button", name="Rename").click()
    expect(page.get_by_label("New name")).to_be_focused()
    page.keyboard.type("Renamed one")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Renamed one")).to_be_focused()
    expect(page.get_by_role("heading", name="Renamed one")).to_be_visible()
    shot(page, "history.png")
    page.locator("#conversation-list li", has_text="second topic").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status").filter(has_text="Deleted")).to_have_text("Deleted “second topic”.")
    expect(page.get_by_role("button", name="Renamed one")).to_be_focused()  # the next in the list
    page.reload()
    expect(conversation_titles(page)).to_have_text(["third topic", "Renamed one"])
    # Another user of this browser sees none of them.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "stranger")
    expect(conversation_titles(page)).to_have_text(["New conversation"])


def test_the_oldest_turns_are_dropped_to_fit_the_context_and_the_page_says_so(page: Page) -> None:
    sign_in(page, "longwinded")
    long_message = "word " * 3600  # 18,000 characters: about 4,500 tokens at four characters a token
    say(page, "first " + long_message)
    answer(page)
    expect(page.locator("#context-note")).to_be_hidden()
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as sent:
        say(page, "second " + long_message)
    answer(page)
    # 8,192 tokens less 1,024 for the answer: the first turn (the message and its answer) goes.
    messages = (sent.value.post_data_json or {})["messages"]
    assert [m["content"][:7] for m in messages] == ["second "]
    expect(page.locator("#context-note")).to_have_text(
        "The 2 oldest messages are no longer sent to the model: it reads at most 8,192 tokens, "
        "and 1,024 are kept for its answer. Tokens are estimated at 4 characters each."
    )
    expect(page.locator("#messages li.outside-context")).to_have_count(2)


@pytest.mark.parametrize(
    ("viewport", "scheme"), [(DESKTOP, "light"), (PHONE, "light"), (DESKTOP, "dark")], ids=["desktop", "phone", "dark"]
)
def test_axe_finds_no_serious_violations(
    browser: Browser, chain: LocalChain, viewport: dict[str, int], scheme: str
) -> None:
    context, page = open_page(browser, chain, viewport=viewport, color_scheme=scheme)
    assert serious_violations(page) == []  # the sign-in form
    user = f"axe-{viewport['width']}-{scheme}"
    sign_in(page, user)
    say(page, "show me code [standin:code]")
    answer(page)
    page.get_by_label("Message").fill("a draft")
    assert serious_violations(page) == []
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    if viewport == PHONE:
        toggle = page.get_by_role("button", name="Conversations")
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        expect(page.get_by_role("button", name="New conversation")).to_be_focused()
        assert serious_violations(page) == []
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"chat-{viewport['width']}-{scheme}.png"), full_page=True)
    context.close()
