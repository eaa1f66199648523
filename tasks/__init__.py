"""Built-in tasks. Importing this package registers them.

``brats-wt`` / ``phantom-wt``: whole-tumour segmentation (U-Net, Dice);
``brats-ml`` / ``phantom-ml``: ET/ED/NCR multi-label classification (ResNet-18, mAP);
``covidqu`` / ``phantom-cls``: three-class classification (ResNet-18, accuracy).
See docs/tasks.md.
"""

from albench.registries import tasks as registry

# The registry's API, so that ``from albench import tasks; @tasks.register(...)`` works for
# built-ins and plugins alike.
register = registry.register
get = registry.get
create = registry.create
names = registry.names
entries = registry.entries

from albench.tasks import classification, segmentation  # noqa: E402,F401
