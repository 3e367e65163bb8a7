"""The public API gateway: JWT authentication, per-user rate limits, request validation,
and a streaming proxy to the internal orchestrator."""
