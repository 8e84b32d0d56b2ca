"""The control plane's half of the runaway-loop breaker: apply a node's trip to the policy (pause or revoke the
key, so every node refuses it), alert, and let an operator resume the key."""
