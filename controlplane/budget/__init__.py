"""Budgets and rate limits on the control plane: the lease ledger, its gRPC service, and visibility.

See proto/interlock_contracts/v1/budget.proto for the lease protocol and README "Budgets and rate limits" for the rules.
"""
