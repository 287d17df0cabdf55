"""The built-in output formats, registered through ``gateway_register_formats`` like any
plugin's (trylast, so a plugin can replace one by registering the same MIME type)."""

from __future__ import annotations

from functools import partial

from ..hookspecs import hookimpl
from . import OutputFormat
from .fits import write_fits
from .html import write_html
from .text import write_csv, write_json, write_tsv
from .votable import write_votable

VOTABLE = "application/x-votable+xml"
TAPREGEXT = "ivo://ivoa.net/std/TAPRegExt#"


@hookimpl(trylast=True)
def gateway_register_formats():
    return [
        OutputFormat(
            VOTABLE,
            (
                "votable",
                "votable/binary2",
                "votable/b2",
                "votableb2",
                "application/x-votable+xml;serialization=binary2",
                "text/xml",
                "application/xml",
            ),
            partial(write_votable, serialization="binary2"),
            TAPREGEXT + "output-votable-binary2",
            "vot",
            True,
        ),
        OutputFormat(
            VOTABLE + ";serialization=tabledata",
            ("votable/td", "votabletd", "votable/tabledata"),
            partial(write_votable, serialization="tabledata"),
            TAPREGEXT + "output-votable-td",
            "vot",
            True,
        ),
        OutputFormat(
            VOTABLE + ";serialization=binary",
            ("votable/b", "votable/binary", "votableb"),
            partial(write_votable, serialization="binary"),
            TAPREGEXT + "output-votable-binary",
            "vot",
            True,
        ),
        OutputFormat("text/csv;header=present", ("csv",), write_csv, None, "csv", extra_mimes=("text/csv",)),
        OutputFormat("text/tab-separated-values", ("tsv",), write_tsv, None, "tsv"),
        OutputFormat("application/fits", ("fits",), write_fits, None, "fits", extra_mimes=("image/fits",)),
        OutputFormat("application/json", ("json",), write_json, None, "json"),
        OutputFormat("text/html", ("html",), write_html, None, "html"),
    ]
