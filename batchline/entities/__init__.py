"""Generic entities declared in YAML (front door 3): schema model and value conversion.

Their tables and rows are the data layer's: ``sql.entity_tables`` and ``sql.entity_rows``.
"""
