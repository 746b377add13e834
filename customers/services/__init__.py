"""The customers app's write layer: pulls (declared on jobs.pull_specs), matching (mappings.py holds every write
to mappings), the loyalty sync, and the record readers they build on."""
