"""vo-gateway archive kind ``mast``: MAST catalogs API (Hubble Source Catalog, Pan-STARRS)."""
