"""Everything that touches Kafka: settings, topics, wire schemas, batched clients, and the
embedded broker. The only package that imports aiokafka."""

__all__: list[str] = []
