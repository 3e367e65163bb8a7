"""Reusable constructs: each takes a frozen props dataclass of its own (plain values, never the
environment file's models: the stacks translate those) and hides the provider's struct noise."""
