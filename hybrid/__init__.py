"""The typed library the stacks stand on.

Importing it switches on lazy loading of the provider packages (see
hybrid/lazy_providers.py), so it must be imported before any provider module;
``stacks`` and ``main.py`` do so first.
"""

from hybrid.lazy_providers import activate as _activate_lazy_providers

_activate_lazy_providers()
