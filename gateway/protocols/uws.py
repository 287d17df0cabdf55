"""The UWS 1.1 HTTP binding (UWS 1.1 §2.2), mounted for TAP at ``/tap/async`` (TAP 1.1 §2.2).

Parsing and rendering only; policy is in :class:`gateway.uws.service.JobService`.
Every redirect is a 303 with an absolute ``Location`` (UWS 1.1 §2.2.3; STILTS needs both);
atomic children are ``text/plain`` bare tokens; errors are DALI error VOTables with the
UWS status (404 unknown job, 403 wrong owner or phase, 400 bad value).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, request, send_file

from ..dali import Params
from ..faults import NotFoundFault, UsageFault
from ..formats.votable import error_document
from ..uws import xml
from ..uws.job import Phase, isoformat

XML = "text/xml"
LIST_LAST = 50  # the LAST added to the 303 after DELETE keeps that redirect cheap (UWS-13)


def make_blueprint(service: str, name: str, prefix: str) -> Blueprint:
    """A UWS job list at ``prefix`` (e.g. ``/tap/async``) for ``service`` (the key of its
    runner in ``JobService.runners``)."""
    bp = Blueprint(name, __name__, url_prefix=prefix)

    def gw():
        return current_app.extensions["vo_gateway"]

    def bp_prefix() -> str:
        return prefix.strip("/")

    def job_url(job_id: str) -> str:
        return gw().url(f"{bp_prefix()}/{job_id}")

    def see_other(url: str):
        return redirect(url, code=303)

    def text(value: str) -> Response:
        return Response(value, mimetype="text/plain")

    pairs = Params.pairs_from_request

    def files() -> dict:
        return {k: f for k, f in request.files.items(multi=True)} if request.method == "POST" else {}

    def job(job_id: str):
        return gw().jobs.get(service, job_id, gw().actor())

    @bp.route("", methods=["GET", "POST"])
    def job_list():
        jobs = gw().jobs
        if request.method == "GET":
            p = Params.from_request()
            phases = [v.upper() for v in p.getlist("PHASE")]
            found = jobs.list(service, gw().actor(), phases, p.get("AFTER"), p.get_int("LAST", minimum=1))
            return Response(xml.job_list_document(found, gw().url(bp_prefix())), mimetype=XML)
        j = jobs.create(service, gw().actor(), pairs(), files(), service_url=gw().url())
        return see_other(job_url(j.job_id))

    @bp.route("/<job_id>", methods=["GET", "POST", "DELETE"])
    def job_resource(job_id):
        j = job(job_id)
        jobs = gw().jobs
        if request.method == "DELETE":
            jobs.destroy(job_id)
            return see_other(gw().url(bp_prefix()) + f"?LAST={LIST_LAST}")
        if request.method == "POST":
            p = Params.from_request()
            action = p.get("ACTION")
            if action is not None:
                if action.upper() != "DELETE":
                    raise UsageFault(f"ACTION={action} is not supported; use ACTION=DELETE")
                jobs.destroy(job_id)
                return see_other(gw().url(bp_prefix()) + f"?LAST={LIST_LAST}")
            phase = p.get("PHASE")
            rest = [(k, v) for k, v in pairs() if k.upper() != "PHASE"]
            if rest or files():
                jobs.add_parameters(j, gw().actor(), rest, files())
            if phase is not None:
                _phase(j, phase)
            return see_other(job_url(job_id))
        p = Params.from_request()
        wait = p.get_int("WAIT", minimum=-1)
        if wait is not None and wait != 0:
            j = jobs.wait(j, wait, p.get("PHASE"))
        return Response(xml.job_document(j, job_url(job_id)), mimetype=XML)

    def _phase(j, value: str) -> None:
        v = value.upper()
        if v == "RUN":
            gw().jobs.run(j, gw().actor())
        elif v == "ABORT":
            gw().jobs.abort(j)
        else:
            raise UsageFault(f"PHASE={value} is not allowed; use PHASE=RUN or PHASE=ABORT")

    settable = {  # child: (parameter, text shown, what a POST needs); UWS 1.1 §2.2.3.2-4
        "phase": ("PHASE", lambda j: j.phase, "PHASE=RUN or PHASE=ABORT"),
        "executionduration": ("EXECUTIONDURATION", lambda j: str(j.execution_duration), "EXECUTIONDURATION=<seconds>"),
        "destruction": ("DESTRUCTION", lambda j: isoformat(j.destruction), "DESTRUCTION=<ISO 8601 time>"),
    }

    @bp.route("/<job_id>/<any(phase, executionduration, destruction):child>", methods=["GET", "POST"])
    def settable_child(job_id, child):
        j = job(job_id)
        param, show, needs = settable[child]
        if request.method == "GET":
            return text(show(j))
        value = Params.from_request().get(param)
        if value is None:
            raise UsageFault(f"POST to {child} needs {needs}")
        if child == "phase":
            _phase(j, value)
        elif child == "executionduration":
            gw().jobs.set_execution_duration(j, value)
        else:
            gw().jobs.set_destruction(j, value)
        return see_other(job_url(job_id))

    @bp.route("/<job_id>/quote")
    def quote(job_id):
        return text(isoformat(job(job_id).quote))

    @bp.route("/<job_id>/owner")
    def owner(job_id):
        return text(job(job_id).owner_id or "")

    @bp.route("/<job_id>/error")
    def error(job_id):
        j = job(job_id)
        if not j.error_message:
            raise NotFoundFault(f"job {job_id} has no error (phase {j.phase})")
        return Response(error_document(j.error_message), mimetype="application/x-votable+xml")

    @bp.route("/<job_id>/parameters", methods=["GET", "POST"])
    def parameters(job_id):
        j = job(job_id)
        if request.method == "POST":
            ps = pairs()
            phase = [v for k, v in ps if k.upper() == "PHASE"]
            gw().jobs.add_parameters(j, gw().actor(), [(k, v) for k, v in ps if k.upper() != "PHASE"], files())
            if phase:
                _phase(job(job_id), phase[-1])
            return see_other(job_url(job_id))
        return Response(xml.fragment_document(xml.parameters_xml(j, job_url(job_id))), mimetype=XML)

    @bp.route("/<job_id>/parameters/<part>")
    def parameter_file(job_id, part):
        j = job(job_id)
        if part not in j.uploads:
            raise NotFoundFault(f"job {job_id} has no inline parameter {part}")
        return send_file(j.uploads[part], mimetype="application/octet-stream")

    @bp.route("/<job_id>/results")
    def results(job_id):
        j = job(job_id)
        return Response(xml.fragment_document(xml.results_xml(j, job_url(job_id))), mimetype=XML)

    @bp.route("/<job_id>/results/<result_id>")
    def result(job_id, result_id):
        j = job(job_id)
        for r in j.results:
            if r.id == result_id:
                return send_file(r.path, mimetype=r.mime, conditional=True, etag=False)
        if j.phase != Phase.COMPLETED:
            raise NotFoundFault(f"job {job_id} has no results yet (phase {j.phase})")
        raise NotFoundFault(f"job {job_id} has no result {result_id}")

    return bp
