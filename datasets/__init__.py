"""Built-in data set recipes. Importing this package registers them.

``phantom`` (embedded, generated on demand), ``brats`` (BraTS2018) and ``covidqu`` (COVID-QU-Ex);
:mod:`albench.datasets.synthetic` writes small data sets in the real layouts for tests.
"""

from albench.registries import datasets as registry

# The registry's API, so that ``from albench import datasets; @datasets.register(...)`` works for
# built-ins and plugins alike. (Keep these lines above the imports of the built-in modules.)
register = registry.register
get = registry.get
create = registry.create
names = registry.names
entries = registry.entries

from albench.datasets import brats, covidqu, phantom  # noqa: E402,F401
