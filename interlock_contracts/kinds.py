"""Provider kinds the data plane can speak, and the `options` each accepts. The control plane
validates against these; the data plane's provider registry is tested to match them exactly."""

PROVIDER_OPTIONS: dict[str, frozenset[str]] = {
    "openai": frozenset(),
    "openai_compatible": frozenset({"stream_usage"}),
    "mistral": frozenset(),
    "anthropic": frozenset(),
    "azure_openai": frozenset({"api_version", "auth"}),
    "gemini": frozenset(),
    "vertex_gemini": frozenset({"project", "location"}),
    "vertex_anthropic": frozenset({"project", "location"}),
    "bedrock": frozenset({"region", "auth"}),
    "bedrock_anthropic": frozenset({"region", "auth"}),
}
PROVIDER_KINDS: frozenset[str] = frozenset(PROVIDER_OPTIONS)


def missing_options(kind: str, options: dict[str, str]) -> list[str]:
    """Options a kind cannot work without (the data plane would mark the provider unavailable)."""
    if kind in ("vertex_gemini", "vertex_anthropic"):
        return [o for o in ("project", "location") if not options.get(o)]
    if kind in ("bedrock", "bedrock_anthropic") and options.get("auth", "sigv4") == "sigv4" and not options.get("region"):
        return ["region"]
    return []
