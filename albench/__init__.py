"""albench: a pluggable active-learning benchmark for medical image analysis.

Plugins register through the component packages, which re-export their registry::

    from albench import strategies

    @strategies.register("entropy", task_kinds={"multiclass"})
    class Entropy: ...
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
