"""Cross-API translation: a request in one client dialect served by a provider speaking another.

Pure code (dicts and bytes in, values out, no I/O). File and class names read in the direction the data
flows: `openai_to_anthropic.py` (OpenAIToAnthropic) serves OpenAI clients from Anthropic providers, its
request half is `openai_to_anthropic_request.py` and its answers come back through
`anthropic_to_openai_response.py` (AnthropicToOpenAIStream). `registry.py` maps (client family, client
operation, provider family) to a translator; `binding.py` is what proxy.py uses.
"""
