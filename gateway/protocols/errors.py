"""Error documents, one renderer per protocol family (the single place errors are shaped):

* DALI (TAP, SIA2, DataLink): VOTable ``QUERY_STATUS=ERROR`` (DALI 1.1 §4.2); SIA2 and
  DataLink messages start with the fault label (``UsageFault: ...``).
* SCS 1.03 §3: VOTable with ``INFO name="Error"`` as a VOTABLE child.
* SIA 1.0: VOTable ``QUERY_STATUS=ERROR`` in the results RESOURCE.
* SODA 1.0 §5: ``text/plain`` beginning ``UsageError``/``Error``/``ServiceUnavailable``.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from flask import Response

from ..faults import Fault, MultiValuedFault, NotFoundFault, TransientFault, UsageFault
from ..formats.votable import HEADER, error_document

VOTABLE_MIME = "application/x-votable+xml"


def dali_error(f: Fault, label: bool = False) -> Response:
    msg = f"{f.label}: {f}" if label else str(f)
    return Response(error_document(msg), status=f.status, mimetype=VOTABLE_MIME, headers=f.headers)


def scs_error(f: Fault) -> Response:
    body = (
        HEADER + f'<INFO name="Error" ID="Error" value={quoteattr(str(f))}/>\n<RESOURCE type="results"/>\n</VOTABLE>\n'
    )
    return Response(body, status=f.status, mimetype="text/xml", headers=f.headers)


def soda_error(f: Fault) -> Response:
    """SODA 1.0 §5.2 error: ``text/plain`` beginning with the SODA error vocabulary."""
    if isinstance(f, MultiValuedFault):
        label = f.label
    elif isinstance(f, NotFoundFault):
        label = "UsageError"
    elif isinstance(f, UsageFault):
        label = "UsageError"
    elif isinstance(f, TransientFault):
        label = "ServiceUnavailable"
    else:
        label = "Error"
    return Response(f"{label}: {f}\n", status=f.status, mimetype="text/plain", headers=f.headers)
