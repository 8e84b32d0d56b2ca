"""Provider adapters: how a request is addressed and authenticated for each kind of upstream."""
