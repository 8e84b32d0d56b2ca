"""Provider kinds the data plane can speak. The control plane validates against
this set; the data plane's provider registry is tested to match it exactly."""

PROVIDER_KINDS: frozenset[str] = frozenset({"openai", "openai_compatible", "anthropic"})
