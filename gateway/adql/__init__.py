"""ADQL 2.1: parse (sqlglot + :mod:`.dialect`), validate against the catalogue
(:mod:`.validate`), and translate geometry for SQL engines (:mod:`.geometry`).

Entry point: :func:`gateway.adql.validate.analyze` returns an :class:`AdqlQuery`.
"""

from .validate import AdqlQuery, OutputColumn, analyze, parse  # noqa: F401
