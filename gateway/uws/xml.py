"""UWS 1.1 XML documents (UWS 1.1 §3, schema ``UWS-v1.1.xsd``).

Namespace ``http://www.ivoa.net/xml/UWS/v1.0`` with ``version="1.1"`` on the root; job
elements in the schema's sequence order; ``ownerId``, ``quote``, ``startTime``, ``endTime`` and
``destruction`` written with ``xsi:nil="true"`` when empty.  (vo-models' pydantic-xml models were
considered: their ``Parameters`` needs one model field per parameter name, while TAP job
parameters are open-ended, so the documents are written here and validated against the XSD in
the tests and by taplint.)
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape, quoteattr

from .job import Job, isoformat

NS = (
    'xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: namespace of the ``uws:jobInfo`` content (the schema allows any element there, UWS 1.1 §2.2.1.2):
#: JSON with the running query's ``progress`` and ``plan`` and, once results exist, their ``rows``
INFO_NS = "urn:vo-gateway:jobinfo"


def _el(tag: str, value: str | None, nillable: bool = False) -> str:
    if value is None or value == "":
        return f'<uws:{tag} xsi:nil="true"/>' if nillable else ""
    return f"<uws:{tag}>{escape(value)}</uws:{tag}>"


def parameters_xml(job: Job, job_url: str) -> str:
    out = ["<uws:parameters>"]
    for name, value in job.parameters:
        out.append(f"<uws:parameter id={quoteattr(name.lower())}>{escape(value)}</uws:parameter>")
    for part in job.uploads:
        href = f"{job_url}/parameters/{part}"
        out.append(f'<uws:parameter id={quoteattr(part)} byReference="true">{escape(href)}</uws:parameter>')
    out.append("</uws:parameters>")
    return "".join(out)


def results_xml(job: Job, job_url: str) -> str:
    out = ["<uws:results>"]
    for r in job.results:
        out.append(
            f'<uws:result id={quoteattr(r.id)} xlink:type="simple" '
            f'xlink:href={quoteattr(f"{job_url}/results/{r.id}")} size="{r.size}" '
            f"mime-type={quoteattr(r.mime)}/>"
        )
    out.append("</uws:results>")
    return "".join(out)


def job_document(job: Job, job_url: str) -> str:
    """The ``uws:job`` document for GET ``{job}`` (UWS 1.1 §2.2.1.2)."""
    parts = [
        HEAD,
        f'<uws:job {NS} version="1.1">',
        _el("jobId", job.job_id),
        _el("runId", job.run_id),
        _el("ownerId", job.owner_id, nillable=True),
        _el("phase", job.phase),
        _el("quote", isoformat(job.quote), nillable=True),
        _el("creationTime", isoformat(job.creation_time)),
        _el("startTime", isoformat(job.start_time), nillable=True),
        _el("endTime", isoformat(job.end_time), nillable=True),
        _el("executionDuration", str(job.execution_duration)),
        _el("destruction", isoformat(job.destruction), nillable=True),
        parameters_xml(job, job_url),
        results_xml(job, job_url),
    ]
    if job.error_message:
        parts.append(
            f'<uws:errorSummary type="{job.error_type or "fatal"}" hasDetail="true">'
            f"<uws:message>{escape(job.error_message)}</uws:message></uws:errorSummary>"
        )
    info = dict(job.job_info or {})
    if job.results and any(r.rows for r in job.results):
        info["rows"] = sum(r.rows for r in job.results)  # rows written to the results
    if info:
        parts.append(
            f'<uws:jobInfo><info xmlns="{INFO_NS}" format="application/json">'
            f"{escape(json.dumps(info, separators=(',', ':')))}</info></uws:jobInfo>"
        )
    parts.append("</uws:job>\n")
    return "".join(parts)


def job_list_document(jobs: list[Job], list_url: str) -> str:
    """The ``uws:jobs`` list of ``uws:jobref`` (ShortJobDescription, UWS 1.1 §2.2.1.1)."""
    out = [HEAD, f'<uws:jobs {NS} version="1.1">']
    for j in jobs:
        out.append(
            f'<uws:jobref id={quoteattr(j.job_id)} xlink:type="simple" '
            f"xlink:href={quoteattr(f'{list_url}/{j.job_id}')}>"
            + _el("phase", j.phase)
            + _el("runId", j.run_id)
            + _el("ownerId", j.owner_id, nillable=True)
            + _el("creationTime", isoformat(j.creation_time))
            + "</uws:jobref>"
        )
    out.append("</uws:jobs>\n")
    return "".join(out)


def fragment_document(body: str) -> str:
    """``{job}/parameters`` or ``{job}/results`` as a stand-alone document."""
    tag = body[len("<uws:") : body.index(">")].split()[0]
    return HEAD + body.replace(f"<uws:{tag}>", f"<uws:{tag} {NS}>", 1) + "\n"
