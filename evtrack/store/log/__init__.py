"""The event-log store, in data-flow order.

events (the record) → writer (buffer, background flush) → segments (immutable files)
→ layout (the folder or bucket, atomic writes) → manifest / snapshot (what a reader
takes) → compaction → views (DuckDB) → maintenance (gc, doctor).
"""
