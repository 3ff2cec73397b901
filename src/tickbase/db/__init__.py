"""The database block: server bootstrap (embedded or ``DATABASE_URL``), pool,
numbered migrations and the LISTEN/NOTIFY listener. Owns ``tickbase.schema_migrations``."""
