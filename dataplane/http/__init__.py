"""HTTP/1.1 server for the hot path: httptools parsing on an asyncio protocol (chosen by benchmark)."""
