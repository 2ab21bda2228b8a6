"""Pure rendering of kubegate CRs into a LiteLLM config and a runtime Policy (no I/O, no kopf)."""

from gateway_operator.render.gateway import RenderedGateway, render_gateway

__all__ = ["RenderedGateway", "render_gateway"]
