"""The chat page's Content-Security-Policy, for each way the gateway can be reached."""

from __future__ import annotations

from fastapi.testclient import TestClient

from services.frontend.app import create_app
from services.frontend.settings import FrontendSettings


def policy(gateway_url: str) -> dict[str, str]:
    settings = FrontendSettings(gateway_url=gateway_url, default_model="m")
    header = TestClient(create_app(settings)).get("/").headers["content-security-policy"]
    return dict(directive.strip().split(" ", 1) for directive in header.split(";"))


def test_the_page_may_call_the_gateway_and_identity_platform_only() -> None:
    directives = policy("https://gateway-abc-uc.a.run.app/")
    assert directives["connect-src"] == "'self' https://gateway-abc-uc.a.run.app https://identitytoolkit.googleapis.com"
    assert (directives["script-src"], directives["style-src"], directives["object-src"]) == (
        "'self'",
        "'self'",
        "'none'",
    )


def test_a_gateway_on_the_pages_own_origin_needs_no_other_source() -> None:
    assert policy("/api")["connect-src"] == "'self' https://identitytoolkit.googleapis.com"


def test_every_response_carries_it() -> None:
    client = TestClient(create_app(FrontendSettings(gateway_url="http://127.0.0.1:1", default_model="m")))
    for path in ("/", "/config.json", "/static/app.js", "/health"):
        assert "script-src 'self'" in client.get(path).headers["content-security-policy"]
