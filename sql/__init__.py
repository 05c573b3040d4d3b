"""The data layer: the only code that speaks SQL.

Versioned schema (numbered SQL files applied in order by ``sql.migrator``), connection
pools (``sql.db``) and one data-access module per aggregate. Every other package calls
functions here; none of them holds a SQL string.
"""
