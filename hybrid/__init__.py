"""The typed library the stacks stand on: config, catalog and constructs.

The provider packages load lazily only once ``hybrid.lazy_providers.activate()`` has run;
main.py and the tests' conftest call it before importing a stack.
"""
