"""Usage events: the event built per request and the sinks that make it durable (WAL, Kafka, chDB)."""
