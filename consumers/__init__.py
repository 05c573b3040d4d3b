"""The Faust agents and what they write: inserter (entities + ledger) and projector."""
