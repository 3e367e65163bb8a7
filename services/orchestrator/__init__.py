"""The internal LLM orchestrator: routes chat completions to model backends, enforces
per-user daily token quotas, and records every request in a PostgreSQL usage ledger."""
