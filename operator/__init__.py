"""kubegate control plane: a kopf operator, imported as ``gateway_operator``.

Importing this package is cheap and does not import kopf; only ``gateway_operator.handlers`` does.
"""

__version__ = "0.1.0"
