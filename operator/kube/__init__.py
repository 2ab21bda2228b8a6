"""Kubernetes API access of the operator: the client, server-side apply of children, status patches (no kopf)."""
