"""The plugin hook contract (pluggy project name and entry-point group ``vo_gateway``).

Every hook is prefixed ``gateway_`` and documented in ``docs/plugin_hooks.md`` (a test checks
that each hook here has a section there with its exact signature).  Hooks evolve additively:
arguments are added, never renamed or removed.
"""

import pluggy

hookspec = pluggy.HookspecMarker("vo_gateway")
hookimpl = pluggy.HookimplMarker("vo_gateway")


@hookspec
def gateway_register_archives():
    """Called once per app at start-up.  Return a list of :class:`gateway.archive.Archive`
    subclasses; each class's ``kind`` is the value ``config.yaml`` selects it with.  Two classes
    with the same ``kind`` are a start-up error."""


@hookspec
def gateway_register_formats():
    """Called once per app at start-up.  Return a list of
    :class:`gateway.formats.OutputFormat` objects (MIME type, aliases, writer).  Built-in
    formats are registered through this hook too; a later registration of the same MIME type
    replaces an earlier one."""


@hookspec(firstresult=True)
def gateway_actor_from_request(request):
    """Called for every request.  Return a dict describing the authenticated actor (at least
    ``{"id": ...}``; ``id`` is the UWS ownerId, ``key`` (default ``id``) the identity job
    ownership is checked against) or None for anonymous.  First non-None result wins; the
    built-in HTTP Basic actor (:mod:`gateway.auth`) is ``trylast``."""


@hookspec(firstresult=True)
def gateway_permission_allowed(actor, action, archive, resource):
    """Called before an archive is queried.  ``action`` is ``"query"``, ``"cone"``,
    ``"images"``, ``"cutout"`` or ``"datalink"``; ``archive`` the archive name; ``resource`` a table name or
    image ID.  Return True/False to decide, None to defer (default: allowed)."""


@hookspec
def gateway_query_started(actor, protocol, archive, query):
    """Called when a query is handed to an archive.  ``protocol`` is ``"tap"``, ``"scs"``,
    ``"sia"`` or ``"soda"``; ``query`` the ADQL text or a parameter dict.  Return value
    ignored; never receives credentials."""


@hookspec
def gateway_query_finished(actor, protocol, archive, query, rows, overflow, error):
    """Called after a response has been streamed (or failed).  ``rows`` is the number of rows
    written, ``overflow`` a bool, ``error`` the error message or None.  Return value ignored."""
