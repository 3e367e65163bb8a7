"""The chat page's server, as its image runs it: ``python -m frontend --host HOST --port PORT``.

Production signs users in with Identity Platform (AUTH_MODE=identity-platform): the image
holds no development issuer (gateway.dev_issuer, for local runs).
"""

from servicekit.serve import serve

if __name__ == "__main__":
    serve("frontend.app:main", "--http", "httptools")
