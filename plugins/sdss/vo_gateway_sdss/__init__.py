"""vo-gateway archive kind ``sdss`` (SDSS SkyServer SQL search)."""
