"""STAND-IN for the Cloud Run / GCE metadata server's identity and token endpoints, speaking
its protocol (Metadata-Flavor: Google), so google-auth's real ID-token and access-token
code paths run; and for Google's ID-token signing keys (www.googleapis.com/oauth2/v3/certs),
so a service that checks its callers' ID tokens checks these as it would Google's.

Its ID tokens are shaped as Google's for a service account: RS256 with the key id in the
header; iss https://accounts.google.com, aud the audience asked for, sub and azp the account's
unique id, and with format=full (which google-auth asks for) email and email_verified: what
services.orchestrator.callers checks. Google signs instance and service-account ID tokens RS256,
verifiable against its public OAuth2 certificates
(cloud.google.com/compute/docs/instances/verifying-instance-identity)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Header, Response
from jwt.algorithms import RSAAlgorithm

CERTS_PATH = "/oauth2/v3/certs"  # Google's JWKS of its ID-token keys, on www.googleapis.com
DEFAULT_EMAIL = "gateway@project.iam.gserviceaccount.com"


class GoogleSigner:
    """Google's ID-token signing key, a throw-away one; several metadata stand-ins (one per
    service, each its own account) share one, as Google signs every account's tokens."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(20)

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}


def _metadata(body: str, media_type: str = "text/plain") -> Response:
    return Response(body, headers={"Metadata-Flavor": "Google"}, media_type=media_type)


def _id_token_claims(audience: str, unique_id: str, email: str, *, full: bool) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": audience,
        "sub": unique_id,
        "azp": unique_id,
        "iat": now,
        "exp": now + 3600,
    }
    if full:
        claims.update(email=email, email_verified=True)
    return claims


def create_app(
    access_token: str | None = None, email: str = DEFAULT_EMAIL, signer: GoogleSigner | None = None
) -> FastAPI:
    """``access_token``: hand out this one token (a database that checks it as a password);
    by default a new one each time. ``email``: the service account whose identity it serves.
    ``signer``: Google's signing key, shared with other stand-ins; a new one by default."""
    fixed_token = access_token
    signer = signer or GoogleSigner()
    # A service account's unique id: 21 digits, stable for the account.
    unique_id = str(int(hashlib.sha256(email.encode()).hexdigest(), 16))[:21]
    app = FastAPI(title="metadata server stand-in")
    app.state.signer = signer
    app.state.audiences = []
    app.state.token_scopes = []  # the scopes of each access token handed out

    @app.get("/")
    async def ping() -> Response:
        return Response("ok", headers={"Metadata-Flavor": "Google"})

    @app.get("/computeMetadata/v1/instance/service-accounts/default/")
    async def account(metadata_flavor: str = Header(...)) -> Response:
        assert metadata_flavor == "Google"
        info = {
            "email": email,
            "aliases": ["default"],
            "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
        }
        return _metadata(json.dumps(info), "application/json")

    @app.get("/computeMetadata/v1/instance/service-accounts/default/identity")
    async def identity(audience: str, format: str = "standard", metadata_flavor: str = Header(...)) -> Response:
        assert metadata_flavor == "Google"
        app.state.audiences.append(audience)
        return _metadata(signer.sign(_id_token_claims(audience, unique_id, email, full=format == "full")))

    @app.get(CERTS_PATH)
    async def certs() -> dict[str, Any]:
        return signer.jwks()

    @app.get("/computeMetadata/v1/instance/service-accounts/default/token")
    async def service_account_token(scopes: str = "", metadata_flavor: str = Header(...)) -> Response:
        assert metadata_flavor == "Google"
        app.state.token_scopes.append(scopes)
        token = {
            "access_token": fixed_token or f"standin-access-token-{len(app.state.token_scopes)}",
            "expires_in": 3599,
            "token_type": "Bearer",
        }
        return _metadata(json.dumps(token), "application/json")

    @app.get("/computeMetadata/v1/project/project-id")
    async def project(metadata_flavor: str = Header(...)) -> Response:
        assert metadata_flavor == "Google"
        return _metadata("standin-project")

    return app
