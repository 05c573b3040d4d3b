"""The Kafka contract and its clients: topics, envelopes, events, dead letters, the
producer and consumers, and the dead-letter operations (list, show, replay)."""
