"""STAND-IN for the Cloud Run / GCE metadata server's identity and token endpoints, speaking
its protocol (Metadata-Flavor: Google), so google-auth's real ID-token and access-token
code paths run."""

from __future__ import annotations

import json
import time

import jwt
from fastapi import FastAPI, Header, Response


def create_app(access_token: str | None = None) -> FastAPI:
    """``access_token``: hand out this one token (a database that checks it as a password);
    by default a new one each time."""
    fixed_token = access_token
    app = FastAPI(title="metadata server stand-in")
    app.state.audiences = []
    app.state.token_scopes = []  # the scopes of each access token handed out

    @app.get("/")
    async def ping() -> Response:
        return Response("ok", headers={"Metadata-Flavor": "Google"})

    @app.get("/computeMetadata/v1/instance/service-accounts/default/")
    async def account(metadata_flavor: str = Header(...)) -> Response:
        assert metadata_flavor == "Google"
        info = {
            "email": "gateway@project.iam.gserviceaccount.com",
            "aliases": ["default"],
            "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
        }
        return Response(json.dumps(info), headers={"Metadata-Flavor": "Google"}, media_type="application/json")

    @app.get("/computeMetadata/v1/instance/service-accounts/default/identity")
    async def identity(audience: str, metadata_flavor: str = Header(...)) -> Response:
        assert metadata_flavor == "Google"
        app.state.audiences.append(audience)
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "sub": "gateway",
            "iat": now,
            "exp": now + 3600,
        }
        # Shaped like Google's ID tokens; signed with a throw-away key, since nothing here checks it.
        token = jwt.encode(claims, "stand-in-signing-key-of-32-bytes!", algorithm="HS256")
        return Response(token, headers={"Metadata-Flavor": "Google"}, media_type="text/plain")

    @app.get("/computeMetadata/v1/instance/service-accounts/default/token")
    async def access_token(scopes: str = "", metadata_flavor: str = Header(...)) -> Response:
        assert metadata_flavor == "Google"
        app.state.token_scopes.append(scopes)
        token = {
            "access_token": fixed_token or f"standin-access-token-{len(app.state.token_scopes)}",
            "expires_in": 3599,
            "token_type": "Bearer",
        }
        return Response(json.dumps(token), headers={"Metadata-Flavor": "Google"}, media_type="application/json")

    @app.get("/computeMetadata/v1/project/project-id")
    async def project(metadata_flavor: str = Header(...)) -> Response:
        assert metadata_flavor == "Google"
        return Response("standin-project", headers={"Metadata-Flavor": "Google"}, media_type="text/plain")

    return app
