"""STAND-IN for Google Identity Platform's two endpoints the platform uses: the chat page's
email/password sign-in (identitytoolkit.googleapis.com, accounts:signInWithPassword) and
the key set its ID tokens are checked against (www.googleapis.com, securetoken JWKS).

Tokens are shaped like Identity Platform's (issuer https://securetoken.google.com/PROJECT,
audience PROJECT, the user's id as subject; firebase.google.com/docs/auth/admin/verify-id-tokens)
but signed with a throw-away key. Any email signs in with the one password given.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from services.gateway.dev_issuer import DevIssuer

SIGN_IN_PATH = "/v1/accounts:signInWithPassword"
JWKS_PATH = "/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"


def identity_issuer(directory: Path, project: str) -> DevIssuer:
    return DevIssuer(directory, issuer=f"https://securetoken.google.com/{project}", audience=project)


def user_id(email: str) -> str:
    return hashlib.sha256(email.lower().encode()).hexdigest()[:28]


def create_app(issuer: DevIssuer, *, api_key: str, password: str) -> FastAPI:
    app = FastAPI(title="Identity Platform stand-in")
    # The page calls Google's endpoint from its own origin, as browsers allow for it.
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["POST"], allow_headers=["content-type"])

    @app.post(SIGN_IN_PATH)
    async def sign_in(request: Request, key: str = "") -> JSONResponse:
        if key != api_key:
            return _error(400, "API key not valid. Please pass a valid API key.")
        body = await request.json()
        email = str(body.get("email", ""))
        if "@" not in email or body.get("password") != password:
            return _error(400, "INVALID_LOGIN_CREDENTIALS")
        token = issuer.token(user_id(email), email=email)
        return JSONResponse(
            {
                "kind": "identitytoolkit#VerifyPasswordResponse",
                "localId": user_id(email),
                "email": email,
                "idToken": token,
                "registered": True,
                "expiresIn": "3600",
            }
        )

    @app.get(JWKS_PATH)
    async def jwks() -> dict[str, Any]:
        return issuer.jwks()

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)
