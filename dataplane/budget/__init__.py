"""Budgets and rate limits on the data plane: worst-case estimation, local reserve/settle against
leases granted by the control plane, refusals, and the background lease client."""
