"""ObsCore 1.1 columns (ObsCore 1.1 §3, Table 1 and Appendix C) for SIA 2.0 responses: the
column list, one record batch from ObsCore records, and the non-positional SIA 2.0 matching
of a record (positions: :mod:`gateway.sky`)."""

from __future__ import annotations

import pyarrow as pa

from .schema import ARROW_TYPES, Column


def _oc(name, datatype, ucd, unit=None, desc=None, arraysize=None, xtype=None):
    return Column(
        name,
        datatype,
        arraysize=arraysize,
        xtype=xtype,
        unit=unit,
        ucd=ucd,
        utype="obscore:" + UTYPES[name],
        description=desc,
        principal=True,
        std=True,
    )


UTYPES = {
    "dataproduct_type": "ObsDataset.dataProductType",
    "calib_level": "ObsDataset.calibLevel",
    "obs_collection": "DataID.Collection",
    "obs_id": "DataID.observationID",
    "obs_publisher_did": "Curation.PublisherDID",
    "access_url": "Access.Reference",
    "access_format": "Access.Format",
    "access_estsize": "Access.Size",
    "target_name": "Target.Name",
    "s_ra": "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
    "s_dec": "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
    "s_fov": "Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
    "s_region": "Char.SpatialAxis.Coverage.Support.Area",
    "s_resolution": "Char.SpatialAxis.Resolution.Refval.value",
    "s_xel1": "Char.SpatialAxis.numBins1",
    "s_xel2": "Char.SpatialAxis.numBins2",
    "t_min": "Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
    "t_max": "Char.TimeAxis.Coverage.Bounds.Limits.StopTime",
    "t_exptime": "Char.TimeAxis.Coverage.Support.Extent",
    "t_resolution": "Char.TimeAxis.Resolution.Refval.value",
    "t_xel": "Char.TimeAxis.numBins",
    "em_min": "Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit",
    "em_max": "Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit",
    "em_res_power": "Char.SpectralAxis.Resolution.ResolPower.refVal",
    "em_xel": "Char.SpectralAxis.numBins",
    "o_ucd": "Char.ObservableAxis.ucd",
    "pol_states": "Char.PolarizationAxis.stateList",
    "pol_xel": "Char.PolarizationAxis.numBins",
    "facility_name": "Provenance.ObsConfig.Facility.name",
    "instrument_name": "Provenance.ObsConfig.Instrument.name",
}

OBSCORE_COLUMNS = [
    _oc("dataproduct_type", "char", "meta.code.class", None, "Data product type (image)", "*"),
    _oc("calib_level", "int", "meta.code;obs.calib", None, "Calibration level (0-4)"),
    _oc("obs_collection", "char", "meta.id", None, "Name of the data collection", "*"),
    _oc("obs_id", "char", "meta.id", None, "Observation identifier", "*"),
    _oc("obs_publisher_did", "char", "meta.ref.ivoid", None, "Publisher dataset identifier (SODA/DataLink ID)", "*"),
    _oc("access_url", "char", "meta.ref.url", None, "URL of the dataset", "*"),
    _oc("access_format", "char", "meta.code.mime", None, "MIME type of the dataset", "*"),
    _oc("access_estsize", "long", "phys.size;meta.file", "kbyte", "Estimated dataset size"),
    _oc("target_name", "char", "meta.id;src", None, "Target name", "*"),
    _oc("s_ra", "double", "pos.eq.ra", "deg", "Central right ascension, ICRS"),
    _oc("s_dec", "double", "pos.eq.dec", "deg", "Central declination, ICRS"),
    _oc("s_fov", "double", "phys.angSize;instr.fov", "deg", "Diameter of the covered region"),
    _oc("s_region", "double", "pos.outline;obs.field", "deg", "Footprint polygon (ICRS)", "*", "polygon"),
    _oc("s_resolution", "double", "pos.angResolution", "arcsec", "Spatial resolution (PSF FWHM)"),
    _oc("s_xel1", "long", "meta.number", None, "Number of pixels along the first axis"),
    _oc("s_xel2", "long", "meta.number", None, "Number of pixels along the second axis"),
    _oc("t_min", "double", "time.start;obs.exposure", "d", "Start time, MJD (UTC)"),
    _oc("t_max", "double", "time.end;obs.exposure", "d", "Stop time, MJD (UTC)"),
    _oc("t_exptime", "double", "time.duration;obs.exposure", "s", "Exposure time"),
    _oc("t_resolution", "double", "time.resolution", "s", "Temporal resolution"),
    _oc("t_xel", "long", "meta.number", None, "Number of time samples"),
    _oc("em_min", "double", "em.wl;stat.min", "m", "Minimum wavelength"),
    _oc("em_max", "double", "em.wl;stat.max", "m", "Maximum wavelength"),
    _oc("em_res_power", "double", "spect.resolution", None, "Spectral resolving power"),
    _oc("em_xel", "long", "meta.number", None, "Number of spectral samples"),
    _oc("o_ucd", "char", "meta.ucd", None, "UCD of the observable", "*"),
    _oc("pol_states", "char", "meta.code;phys.polarization", None, "Polarization states", "*"),
    _oc("pol_xel", "long", "meta.number", None, "Number of polarization samples"),
    _oc("facility_name", "char", "meta.id;instr.tel", None, "Facility (telescope)", "*"),
    _oc("instrument_name", "char", "meta.id;instr", None, "Instrument", "*"),
]


def obscore_batch(records: list[dict]) -> pa.RecordBatch:
    """Arrow batch of ObsCore records (dicts keyed by ObsCore column names; missing = null)."""
    arrays = []
    for c in OBSCORE_COLUMNS:
        typ = pa.list_(pa.float64()) if c.name == "s_region" else ARROW_TYPES[c.datatype]
        arrays.append(pa.array([r.get(c.name) for r in records], type=typ))
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in OBSCORE_COLUMNS])


def record_matches(rec: dict, q, band: bool = True, time: bool = True) -> bool:
    """Whether one ObsCore record satisfies the non-positional SIA 2.0 constraints of ``q``
    (:class:`gateway.archive.ImageQuery`, SIA 2.0 §2.1: values of one parameter OR-ed,
    parameters AND-ed).  ``band``/``time`` False skip constraints an upstream already applied."""

    def within(v, intervals):
        return not intervals or (v is not None and any(lo <= v <= hi for lo, hi in intervals))

    def overlaps(lo, hi, intervals):
        return not intervals or (lo is not None and hi is not None and any(a <= hi and b >= lo for a, b in intervals))

    return (
        (not band or overlaps(rec.get("em_min"), rec.get("em_max"), q.band))
        and (not time or overlaps(rec.get("t_min"), rec.get("t_max"), q.time))
        and within(rec.get("t_exptime"), q.exptime)
        and within(rec.get("s_fov"), q.fov)
        and within(rec.get("s_resolution"), q.spatres)
        and (not q.collection or rec.get("obs_collection") in q.collection)
        and (not q.facility or rec.get("facility_name") in q.facility)
        and (not q.instrument or rec.get("instrument_name") in q.instrument)
        and (not q.dptype or rec.get("dataproduct_type") in q.dptype)
        and (not q.calib or rec.get("calib_level") in q.calib)
        and (not q.target or rec.get("target_name") in q.target)
        and (not q.id or (rec.get("obs_publisher_did") or "").lower() in [i.lower() for i in q.id])
        and (not q.format or rec.get("access_format") in q.format)
    )
