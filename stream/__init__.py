"""tympan runtime: frame → stream state → window → features → model → event.

This package never imports TensorFlow, ``models`` or ``exporters``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
