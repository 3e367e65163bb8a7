"""The chat page: static HTML, CSS and JavaScript (no build step) served by a small Python app."""
