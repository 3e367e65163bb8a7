"""Stand-ins for what cannot run here, speaking the real protocol."""
