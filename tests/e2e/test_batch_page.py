"""The batch page in Chromium, on the platform as dev deploys it with its batch path
(devtools/local_chain.py, batches=True): a file with a bad line is refused with the API's own
words; a good one becomes a batch whose progress bar fills from request_counts, whose output
downloads; a long one is cancelled. The page passes axe-core at desktop and phone sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pages import SCREENSHOTS, serious_violations, sign_in
from playwright.sync_api import Browser, Page, expect

from devtools.local_chain import LocalChain

# The local chain it runs on (tests/conftest.py's ``chain``): local_chain's keyword arguments.
CHAIN: dict[str, object] = {"batches": True}


def batch_page(browser: Browser, chain: LocalChain, user: str, **context: object) -> Page:
    page = browser.new_context(**context).new_page()  # type: ignore[arg-type]
    page.goto(chain["frontend"])
    sign_in(page, user)
    page.get_by_role("link", name="Batches").click()
    expect(page.get_by_role("heading", name="Start a batch")).to_be_visible()
    return page


def jsonl_file(tmp_path: Path, name: str, contents: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in contents))
    return path


def request_line(custom_id: str, model: str, content: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def upload(page: Page, path: Path) -> None:
    page.get_by_label("JSONL file").set_input_files(str(path))
    page.get_by_role("button", name="Upload and start").click()


def test_a_bad_line_is_shown_as_the_api_reports_it(browser: Browser, chain: LocalChain, tmp_path: Path) -> None:
    page = batch_page(browser, chain, "bella")
    bad = jsonl_file(tmp_path, "bad.jsonl", [request_line("a", chain["model"], "hi"), '{"custom_id": "b"'])
    upload(page, bad)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The file was not accepted: line 2")
    expect(alert).to_be_focused()
    expect(page.locator("#batches li")).to_have_count(0)  # nothing was stored, no batch started


def test_a_batch_runs_to_completion_and_its_output_downloads(
    browser: Browser, chain: LocalChain, tmp_path: Path
) -> None:
    page = batch_page(browser, chain, "bruno")
    lines = [request_line(f"q{i}", chain["model"], f"question {i}") for i in range(6)]
    upload(page, jsonl_file(tmp_path, "good.jsonl", lines))
    row = page.locator("#batches li.batch").first
    expect(row).to_be_focused()  # focus moves to the batch just started
    expect(row).to_have_class("batch completed", timeout=60_000)
    expect(row.locator("progress")).to_have_attribute("aria-valuetext", "6 of 6 lines done")
    assert row.locator("progress").evaluate("p => p.value === p.max")
    page.screenshot(path=str(SCREENSHOTS / "batch.png"), full_page=True)
    with page.expect_download() as download:
        row.get_by_role("button", name="Download output").click()
    results = [json.loads(text) for text in Path(download.value.path()).read_text().splitlines()]
    assert sorted(result["custom_id"] for result in results) == [f"q{i}" for i in range(6)]
    assert all(result["response"]["status_code"] == 200 for result in results)


def test_a_long_batch_shows_progress_and_is_cancelled(browser: Browser, chain: LocalChain, tmp_path: Path) -> None:
    page = batch_page(browser, chain, "bianca")
    # 300 lines at 0.2 s each (the stand-in's lag directive): minutes of work, cancelled midway.
    lines = [request_line(f"s{i}", chain["model"], f"slow {i} [standin:lag]") for i in range(300)]
    upload(page, jsonl_file(tmp_path, "slow.jsonl", lines))
    row = page.locator("#batches li.batch").first
    expect(row.locator(".help")).not_to_have_text("0 of 300 lines done", timeout=30_000)  # it moves
    row.get_by_role("button", name="Cancel").click()
    expect(row).to_have_class("batch cancelled", timeout=60_000)
    expect(page.locator("#batches li.batch").first).to_be_focused()
    done = row.locator(".help").inner_text()
    assert done.startswith(tuple(f"{n} of 300" for n in range(1, 300))), done
    expect(row.get_by_role("button", name="Download errors")).to_be_visible()  # the lines never run


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 860}, {"width": 390, "height": 844}])
def test_no_serious_accessibility_violations(browser: Browser, chain: LocalChain, viewport: dict[str, int]) -> None:
    page = batch_page(browser, chain, "bert", viewport=viewport)
    assert serious_violations(page) == []
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")


def test_signed_out_the_page_says_where_to_sign_in(browser: Browser, chain: LocalChain) -> None:
    page = browser.new_context().new_page()
    page.goto(chain["frontend"] + "/batch")
    expect(page.get_by_role("status")).to_contain_text("You are not signed in")
    expect(page.get_by_role("link", name="Sign in on the chat page")).to_be_focused()
