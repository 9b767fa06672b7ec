"""The code MLflow runs to load a registered dul model ("models from code").

``registry`` logs this file as the model's code and the ``components``
modules it imports as the model's ``code/``, so a registered model loads with
``mlflow.pyfunc.load_model("models:/dul-encoder@champion")`` wherever its
pip requirements are installed, dul or not. Nothing is unpickled: the encoder
is a state dict read with ``torch.load(..., weights_only=True)``, the index
folder is arrays read with ``allow_pickle=False``.

What the model does follows from its one artifact:

- ``encoder`` (a checkpoint of any family with codes, loaded by the
  registry): (B, D) float32 inputs -> (B, C) float32 codes (``encode``).
- ``index`` (the index stage's search folder): (B, D) float32 queries ->
  one row per query, ``ids`` (its k nearest items' ids, nearest first) and
  ``distances`` (their Hamming distances); param ``k``.
"""

import numpy as np
import pandas as pd
import torch
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from components.models import registry
from components.retrieval.codes import binarize
from components.retrieval.documents import load_search_index
from components.retrieval.hamming import hash_knn

DEFAULT_K = 10


class DulModel(PythonModel):
    """The encoder or the retrieval index, by the artifact the model was logged with."""

    def load_context(self, context) -> None:
        self.index = None
        if "index" in context.artifacts:
            self.index = load_search_index(context.artifacts["index"])
            self.encoder = self.index.model
        else:
            self.encoder = registry.load(context.artifacts["encoder"])
        self.encoder.eval()

    def predict(self, context, model_input: np.ndarray, params: dict | None = None):
        x = np.asarray(model_input, dtype=np.float32)  # (B, D); a DataFrame's columns in order
        with torch.no_grad():
            codes = self.encoder.encode(torch.from_numpy(x)).numpy()  # (B, C)
        if self.index is None:
            return codes
        k = int((params or {}).get("k", DEFAULT_K))
        rows, distances = hash_knn(self.index.hash, binarize(codes, self.index.thresholds), k)  # (B, k) each
        return pd.DataFrame({"ids": [[str(self.index.ids[r]) for r in row] for row in rows],
                             "distances": [[int(d) for d in row] for row in distances]})


set_model(DulModel())
