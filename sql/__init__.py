"""Versioned schema: numbered SQL files applied in order by ``sql.migrator``."""
