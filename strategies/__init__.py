"""Built-in strategies. Importing this package registers them."""

from albench.registries import strategies as registry

# The registry's API, so that ``from albench import strategies; @strategies.register(...)`` works for
# built-ins and plugins alike.
register = registry.register
get = registry.get
create = registry.create
names = registry.names
entries = registry.entries

from albench.strategies import full, random  # noqa: F401
from albench.strategies import vaal  # noqa: F401,E402
