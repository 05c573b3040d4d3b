"""The Kafka-side contract: topics, envelopes, events, the producer and the Faust app."""
