"""The worker and what it writes: the inserter (entities + ledger) and the projector."""
