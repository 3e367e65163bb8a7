"""Reusable constructs: each takes typed settings and hides the provider's struct noise."""
