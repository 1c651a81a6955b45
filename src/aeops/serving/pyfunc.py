"""The registered MLflow model: a pyfunc that scores raw feature columns.

`mlflow.pyfunc.load_model("models:/<name>@production").predict(df)` returns per row
`anomaly_score`, `is_anomaly`, `reconstruction_error`, `z_0 … z_k`; with
`params={"output": "reconstruction"}` it returns the reconstructed rows in raw units.
Bad input raises an MlflowException with INVALID_PARAMETER_VALUE, which the REST server turns into
a 400 with the message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from aeops.serving.scorer import InputError, Scorer


class AutoencoderScorer(mlflow.pyfunc.PythonModel):
    """Artifacts: `network` (weights-only torch bundle), `scaler` and `scoring` (threshold) JSON."""

    def load_context(self, context: Any) -> None:
        bundle = torch.load(context.artifacts["network"], map_location="cpu", weights_only=True)
        with open(context.artifacts["scaler"]) as f:
            scaler = json.load(f)
        with open(context.artifacts["scoring"]) as f:
            scoring = json.load(f)
        percentile = scoring.get("threshold_percentile")
        self.scorer = Scorer(
            bundle, scaler, scoring["threshold"], scoring.get("smoothing", 0.0), scoring.get("top_fraction", 1.0),
            None if percentile is None else 1 - percentile / 100,
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        output = (params or {}).get("output", "scores")
        try:
            out = self.scorer.score(model_input, output)
        except InputError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        if output == "scores" and len(out) >= 20:  # the server's log says when a batch looks mis-scaled
            x = self.scorer.matrix(model_input)
            lines = self.scorer.batch_warnings(len(x), int((self.scorer.out_of_range(x) > 0).sum()),
                                               int(out["is_anomaly"].sum()))
            for line in lines:
                logging.getLogger("aeops.serving").warning(line)
        return out


# Logged as "models from code" (this file's path is the python_model): no pickled objects.
mlflow.models.set_model(AutoencoderScorer())
