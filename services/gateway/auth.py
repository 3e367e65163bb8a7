"""Bearer JWT verification against a JWKS URL: asymmetric algorithms only, issuer,
audience, expiry and not-before checked, keys cached and refreshed on an unknown key id
(at most once per ``jwks_min_refresh_seconds``, one fetch at a time, shared by all who wait).

A token that passed is remembered (by its SHA-256) until it expires or its key leaves
the key set: a client sends the same token for up to an hour, and checking it in full
(base64 segments, RSA signature, claims) is most of the gateway's work per request.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, RSAPSSAlgorithm

# The key set's cache is the orchestrator's too (its callers' Google ID tokens).
from services.servicekit.jwks import MAX_JWKS_BYTES as MAX_JWKS_BYTES
from services.servicekit.jwks import JwksCache as JwksCache
from services.servicekit.jwks import Unauthorized as Unauthorized
from services.servicekit.jwks import bearer_token, token_head

ALGORITHMS: dict[str, type[RSAAlgorithm] | type[ECAlgorithm]] = {
    "RS256": RSAAlgorithm,
    "RS384": RSAAlgorithm,
    "RS512": RSAAlgorithm,
    "PS256": RSAPSSAlgorithm,
    "PS384": RSAPSSAlgorithm,
    "PS512": RSAPSSAlgorithm,
    "ES256": ECAlgorithm,
    "ES384": ECAlgorithm,
    "ES512": ECAlgorithm,
}
KEY_TYPES: dict[type[RSAAlgorithm] | type[ECAlgorithm], str] = {
    RSAAlgorithm: "RSA",
    RSAPSSAlgorithm: "RSA",
    ECAlgorithm: "EC",
}
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_REMEMBERED_TOKENS = 10_000  # a few MB at most; the least recently used is forgotten first


@dataclass(frozen=True)
class Caller:
    user_id: str


@dataclass(frozen=True)
class _Passed:
    caller: Caller
    kid: str
    jwk: dict[str, Any]  # the key set entry it was checked with: a refresh that replaces it forgets the token
    expires: float  # exp + leeway: when PyJWT would start refusing it


class Verifier:
    def __init__(self, jwks: JwksCache, issuer: str, audience: str, leeway: int, max_token_bytes: int) -> None:
        self.jwks, self.issuer, self.audience = jwks, issuer, audience
        self.leeway, self.max_token_bytes = leeway, max_token_bytes
        self.passed: dict[bytes, _Passed] = {}

    async def verify(self, authorization: str | None) -> Caller:
        token = bearer_token(authorization, self.max_token_bytes)
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self.passed.pop(digest, None)
        if remembered and time.time() < remembered.expires and await self.jwks.key(remembered.kid) is remembered.jwk:
            self.passed[digest] = remembered  # now the most recently used
            return remembered.caller
        passed = await self._check(token)
        if len(self.passed) >= MAX_REMEMBERED_TOKENS:
            del self.passed[next(iter(self.passed))]
        self.passed[digest] = passed
        return passed.caller

    async def _check(self, token: str) -> _Passed:
        algorithm, kid = token_head(token, ALGORITHMS)
        jwk = await self.jwks.key(kid)
        family = ALGORITHMS[algorithm]
        if jwk.get("kty") != KEY_TYPES[family] or jwk.get("alg", algorithm) != algorithm:
            raise Unauthorized("key does not match the algorithm")
        try:
            key = family.from_jwk(json.dumps(jwk))
            if not isinstance(key, RSAPublicKey | EllipticCurvePublicKey):
                raise TypeError("the key set's entry is a private key")
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as err:
            raise Unauthorized(type(err).__name__) from None
        subject = claims.get("sub")
        # The subject is the user id: sent on in X-User-Id (no control characters) and stored as
        # text (which cannot hold NUL).
        if not isinstance(subject, str) or not 0 < len(subject) <= 128 or CONTROL.search(subject):
            raise Unauthorized("bad subject")
        # PyJWT has checked that exp is an integer.
        return _Passed(Caller(user_id=subject), kid, jwk, int(claims["exp"]) + self.leeway)
