"""Interlock data plane: serves model traffic from an in-memory policy snapshot."""
