"""Protocol renderers (Flask blueprints): DALI parameter parsing, IVOA documents, errors.
Nothing else lives here: policy is in :mod:`gateway.services`, upstream knowledge in archives."""
