"""The scoring server (``evtrack models serve``): :mod:`.app` is the ASGI application,
:mod:`.server` loads a model and runs it under uvicorn, :mod:`.batching`,
:mod:`.kserve` and :mod:`.metrics` are its parts."""
