"""Serves the chat page and its configuration; in dev mode, also signs users in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from services.frontend.settings import FrontendSettings

STATIC = Path(__file__).parent / "static"


class DevSignIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")


def origin(url: str) -> str | None:
    """``url``'s origin; None for a path on this origin, which 'self' covers."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def content_security_policy(settings: FrontendSettings) -> str:
    """Scripts and styles from this origin only, no inline ones: a model's answer that got into
    the page as HTML could run nothing. The page calls only itself, the gateway and Identity
    Platform (developer.mozilla.org/en-US/docs/Web/HTTP/Headers/Content-Security-Policy)."""
    origins = (origin(url) for url in (settings.gateway_url, settings.identity_platform_url))
    calls = " ".join(dict.fromkeys(o for o in origins if o))
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self' {calls}".rstrip(),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def create_app(settings: FrontendSettings) -> FastAPI:
    app = FastAPI(title="AI platform chat", docs_url=None, redoc_url=None, openapi_url=None)
    headers = {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    @app.middleware("http")
    async def secure_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.update(headers)
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/batch", include_in_schema=False)
    async def batch_page() -> FileResponse:
        return FileResponse(STATIC / "batch.html", headers={"Cache-Control": "no-cache"})

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/config.json")
    async def config() -> dict[str, Any]:
        return {
            "gatewayUrl": settings.gateway_url.rstrip("/"),
            "model": settings.default_model,
            "auth": {
                "mode": settings.auth_mode,
                "apiKey": settings.identity_platform_api_key,
                "url": settings.identity_platform_url.rstrip("/"),
            },
        }

    if settings.auth_mode == "dev":
        from services.gateway.dev_issuer import DevIssuer

        issuer = DevIssuer(settings.dev_issuer_dir or Path(".dev-issuer"))

        @app.post("/dev/sign-in")
        async def dev_sign_in(request: DevSignIn) -> dict[str, str]:
            return {"token": issuer.token(request.username, ttl=settings.dev_token_seconds)}
    else:

        @app.post("/dev/sign-in")
        async def no_dev_sign_in() -> None:
            raise HTTPException(404)

    return app


def main() -> FastAPI:
    """The ASGI app uvicorn serves (``services.frontend.app:main`` with --factory)."""
    return create_app(FrontendSettings())
