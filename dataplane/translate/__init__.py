"""Cross-API translation: a request in one client dialect served by a provider speaking another.

Pure code (dicts and bytes in, values out, no I/O). One module per direction; `registry.py`
maps (client dialect, provider dialect) to a translator; `binding.py` is what proxy.py uses.
"""
