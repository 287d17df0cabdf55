"""vo-gateway archive kind ``hats``: HATS catalogues served over TAP and SCS (plugins/hats/README.md)."""
