"""A plugin whose import fails."""

import albench_this_module_does_not_exist  # noqa: F401
