"""Where tracking data lives: the store interface and its implementations.

``log/`` is the event log on any fsspec filesystem (segments, writer, manifests,
compaction, DuckDB views); ``rest/`` talks to an ``evtrack server`` over HTTP.
"""
