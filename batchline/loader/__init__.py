"""``batchline load``: a client that sends a large NDJSON or CSV file to the batch-inserts
front door in batches. ``reading`` turns the file into batches, ``sending`` talks HTTP,
``loading`` runs both and sums up."""
