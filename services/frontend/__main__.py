"""The chat page's server, as its image runs it: ``python -m services.frontend --host HOST --port PORT``.

Production signs users in with Identity Platform (AUTH_MODE=identity-platform): the image
holds no development issuer (services.gateway.dev_issuer, for local runs).
"""

from services.servicekit.serve import serve

if __name__ == "__main__":
    serve("services.frontend.app:main", "--http", "httptools")
