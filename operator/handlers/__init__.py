"""kopf handlers (thin): importing this package registers them."""

from gateway_operator.handlers import gateway  # noqa: F401
