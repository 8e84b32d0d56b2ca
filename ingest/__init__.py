"""Usage pipeline: UsageEvent rows, the ClickHouse schema and a batched writer shared by the dev sink and the Kafka consumer."""
