"""What the gateway and the orchestrator share: JSON logs Cloud Logging reads, and OpenAI-style errors."""
