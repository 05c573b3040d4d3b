"""One writer per entity kind: validates a chunk's records and writes them set-based."""
