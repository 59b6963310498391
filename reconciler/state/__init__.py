"""State: the recorded document (``document``: resources, lineage, serial) and its manager
(``manager``: serialisation, serial bumps, lineage checks, locks, history) over a storage backend of
the top-level ``states`` package."""
