"""Loopback emulations of upstream archives, built from ../shared/upstreams/REFERENCE.md and
the real recorded responses copied to tests/fixtures/ (with provenance)."""
