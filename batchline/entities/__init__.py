"""Generic entities declared in YAML (front door 3): schema model, conversion, tables."""
