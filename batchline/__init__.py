"""batchline: bulk ingestion into PostgreSQL through Kafka, with per-record outcomes."""
