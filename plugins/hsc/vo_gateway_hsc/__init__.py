"""vo-gateway archive kind ``hsc`` (Subaru HSC-SSP), being built: so far the ADQL -> HSC SQL
translation (:mod:`.translate`).  Not registered as a kind yet."""
