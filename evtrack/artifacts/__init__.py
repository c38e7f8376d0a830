"""Artifact storage: files logged with a run, on any fsspec filesystem."""
