"""Monthly cost estimates from the typed environment files and a shipped price table."""
