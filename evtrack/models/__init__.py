"""Models in MLflow's format: ``MLmodel`` folders, signatures, flavors, serving.

``evtrack.sklearn`` and ``evtrack.pyfunc`` are the MLflow-spelled entry points; this
package holds the pieces: :mod:`~evtrack.models.mlmodel` (the file),
:mod:`~evtrack.models.signature`, :mod:`~evtrack.models.flavors` (a registry),
:mod:`~evtrack.models.uri` (``runs:/``, ``models:/``, paths, fsspec URLs),
:mod:`~evtrack.models.scoring` (the HTTP server) and :mod:`~evtrack.models.batch`
(``evtrack models predict``). Importing it loads neither pandas nor scikit-learn.
"""

from __future__ import annotations

from evtrack.models.mlmodel import Model, ModelInfo
from evtrack.models.signature import ModelSignature, infer_signature

__all__ = ["Model", "ModelInfo", "ModelSignature", "infer_signature"]
