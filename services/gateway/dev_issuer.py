"""The development issuer: an RSA key pair of the project's own, its JWKS, and tokens
signed with it, for local runs and tests (production uses Identity Platform / Firebase).

    python -m services.gateway.dev_issuer --dir .dev-issuer token alice     # print a token for user alice
    python -m services.gateway.dev_issuer --dir .dev-issuer serve --port 8401  # serve /jwks.json
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from fastapi import FastAPI

ISSUER = "https://dev-issuer.local"
AUDIENCE = "hybrid-ai-platform-dev"


class DevIssuer:
    def __init__(self, directory: Path, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.issuer, self.audience = issuer, audience
        directory.mkdir(parents=True, exist_ok=True)
        key_file = directory / "private-key.pem"
        if not key_file.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_file.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            key_file.chmod(0o600)
        loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{key_file}: not an RSA private key")
        self.key = loaded
        public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public).hexdigest()[:16]

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.kid,
                    "n": _b64(numbers.n),
                    "e": _b64(numbers.e),
                }
            ]
        }

    def token(self, subject: str, ttl: int = 3600, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": subject, "iat": now, "nbf": now, "exp": now + ttl}
        claims.update(overrides)
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwks_app(issuer: DevIssuer) -> FastAPI:
    from fastapi import FastAPI

    app = FastAPI(title="development issuer")

    @app.get("/jwks.json")
    async def jwks() -> dict[str, Any]:
        return issuer.jwks()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(".dev-issuer"))
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="print a token")
    token.add_argument("subject")
    token.add_argument("--ttl", type=int, default=3600)
    serve = commands.add_parser("serve", help="serve /jwks.json")
    serve.add_argument("--port", type=int, default=8401)
    args = parser.parse_args()
    issuer = DevIssuer(args.dir)
    if args.command == "token":
        print(issuer.token(args.subject, ttl=args.ttl))
    else:
        import uvicorn

        uvicorn.run(jwks_app(issuer), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
