"""Who may call the orchestrator. Its routes bill whatever user X-User-Id names, so only a caller
that proves to be one of ``allowed_callers`` (the gateway's service account) is served: each
request but GET /health carries a Google-signed ID token, as Cloud Run's IAM check already wants
(cloud.google.com/run/docs/authenticating/service-to-service), and the orchestrator checks it
again itself, so that the check holds wherever the request comes from (another route into the
service, a misconfigured invoker binding, a local run with the network open).

The token is checked as Google documents for its ID tokens
(developers.google.com/identity/sign-in/web/backend-auth, "Verify the integrity of the ID
token"): signed by one of Google's keys (the JWKS at www.googleapis.com/oauth2/v3/certs,
cached; fetched again for an unknown key id), iss accounts.google.com or
https://accounts.google.com, not expired, and aud this service's URL: a Cloud Run service's ID
tokens name its run.app URL as their audience (cloud.google.com/run/docs/configuring/custom-audiences),
the URL the gateway asks the metadata server to mint its token for. The caller is the token's
email claim, with email_verified true. A service account's ID token carries its email only when
asked to (IAM's generateIdToken has includeEmail, cloud.google.com/iam/credentials/reference/rest/v1/projects.serviceAccounts/generateIdToken;
`gcloud auth print-identity-token` has --include-email); google-auth asks the metadata server for
format=full, which includes it (google/auth/compute_engine/credentials.py, IDTokenCredentials).

No valid token for this service (none, malformed, a bad signature, expired, another audience):
401. A valid token of an account that is not allowed: 403. Google's keys out of reach (and none
cached for the token's key id): 503 with Retry-After, as the caller is not at fault.
"""

from __future__ import annotations

import json
import logging

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from fastapi import Request
from jwt.algorithms import RSAAlgorithm

from services.servicekit import logs
from services.servicekit.errors import ApiError, unauthorized
from services.servicekit.jwks import JwksCache, Unauthorized, bearer_token, token_head

log = logging.getLogger("orchestrator.callers")
GOOGLE_ISSUERS = ["https://accounts.google.com", "accounts.google.com"]
MAX_TOKEN_BYTES = 8192
LEEWAY_SECONDS = 30
# Google rotates its signing keys about daily and publishes the next well before use; an
# unknown key id fetches the set again (at most every 30 s).
CERTS_CACHE_SECONDS = 3600
CERTS_MIN_REFRESH_SECONDS = 30


class Forbidden(Exception):
    """A valid token, of a caller that is not allowed."""


class CertsUnavailable(Exception):
    """Google's keys could not be fetched, and none cached is the token's."""


class CallerCheck:
    def __init__(self, certs: JwksCache, audience: str, allowed: frozenset[str]) -> None:
        self.certs, self.audience, self.allowed = certs, audience, allowed

    async def caller(self, authorization: str | None) -> str:
        """The calling service account's email; Unauthorized (401) or Forbidden (403)."""
        token = bearer_token(authorization, MAX_TOKEN_BYTES)
        # Google signs its ID tokens with RS256; anything else (HS256, none) is not Google's.
        _, kid = token_head(token, ("RS256",))
        try:
            jwk = await self.certs.key(kid)
        except Unauthorized as err:
            if err.reason.startswith("JWKS unavailable"):
                raise CertsUnavailable(err.reason) from None
            raise
        try:
            key = RSAAlgorithm.from_jwk(json.dumps(jwk))
            if not isinstance(key, RSAPublicKey):
                raise TypeError("the key set's entry is not an RSA public key")
            claims = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=GOOGLE_ISSUERS,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as err:
            raise Unauthorized(type(err).__name__) from None
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise Forbidden("no verified email in the token")
        if email not in self.allowed:
            raise Forbidden(f"caller not allowed: {email[:200]}")
        return email


async def require_caller(request: Request) -> None:
    """A dependency of every route but /health: the request comes from an allowed caller (the
    app's CallerCheck, ``app.state.callers``); else 401, 403 or 503."""
    check: CallerCheck = request.app.state.callers
    path = request.url.path
    try:
        await check.caller(request.headers.get("authorization"))
    except Unauthorized as err:
        logs.event(log, "caller unauthenticated", logging.WARNING, reason=err.reason, path=path)
        raise unauthorized() from None
    except Forbidden as err:
        logs.event(log, "caller refused", logging.WARNING, reason=str(err), path=path)
        raise ApiError(
            403, "this caller may not call the orchestrator", "permission_error", "caller_not_allowed"
        ) from None
    except CertsUnavailable as err:
        logs.event(log, "caller's token cannot be checked", logging.ERROR, reason=str(err))
        raise ApiError(
            503,
            "cannot check the caller's credentials now; retry shortly",
            "api_error",
            "caller_check_unavailable",
            headers={"Retry-After": "5"},
        ) from None
