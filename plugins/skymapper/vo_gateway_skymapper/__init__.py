"""vo-gateway archive kind ``skymapper``: the SkyMapper Southern Survey (ANU/NCI ASVO)."""
