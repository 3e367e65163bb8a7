"""What the services share: how their images start them, JSON logs Cloud Logging reads, and OpenAI-style errors."""
