"""What the operator does, without kopf: reconcile a Gateway, its key Secrets, Redis link, budgets, checkpoints."""
