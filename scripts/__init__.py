"""The repository's commands; those that import its code run from its root as
``python -m scripts.<name>``."""
