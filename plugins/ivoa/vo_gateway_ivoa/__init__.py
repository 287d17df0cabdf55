"""vo-gateway archive kind ``ivoa``: an upstream TAP service behind the gateway's TAP."""
