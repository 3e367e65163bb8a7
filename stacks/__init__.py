"""One module per layer of the platform; each defines one stack per environment."""

import hybrid  # noqa: F401  (must precede every provider import: lazy provider loading)
