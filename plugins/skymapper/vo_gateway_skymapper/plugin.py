"""Entry point of the ``skymapper`` kind (entry-point group ``vo_gateway``)."""

from gateway.hookspecs import hookimpl

from .archive import SkyMapperArchive


@hookimpl
def gateway_register_archives():
    return [SkyMapperArchive]
