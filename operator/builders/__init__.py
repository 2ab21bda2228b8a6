"""Pure builders of the Kubernetes objects a Gateway owns (dicts, no I/O)."""
