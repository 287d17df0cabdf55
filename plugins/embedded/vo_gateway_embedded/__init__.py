"""vo-gateway plugin: the ``embedded`` archive kind (local files served from DuckDB)."""
