"""The gateway's routes, one resource a module."""
