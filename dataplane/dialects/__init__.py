"""Client API dialects: how a client's request is read and how errors and usage look in its wire format."""
