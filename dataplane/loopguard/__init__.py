"""Runaway-loop breaker on the data plane: cheap local detection per key, a local pause at once, and a trip
reported to the control plane, which pauses (or revokes) the key in the policy so every node refuses it."""
