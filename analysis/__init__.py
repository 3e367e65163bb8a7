"""Offline analysis of the platform: reachability over the synthesized JSON, cost, and advice.

Nothing here imports cdktf or a provider package: these tools read the config and the
synthesized output, so they run without loading the provider bindings.
"""
