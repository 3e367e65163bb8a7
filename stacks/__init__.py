"""One module per layer of the platform; each defines one stack per environment."""
