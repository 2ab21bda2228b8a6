"""kopf handlers (thin wiring only): importing this package registers them."""

from gateway_operator.handlers import gateway, index  # noqa: F401
