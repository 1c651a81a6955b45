"""The registered MLflow model: a pyfunc that scores raw feature columns.

`mlflow.pyfunc.load_model("models:/<name>@production").predict(df)` returns per row
`anomaly_score`, `is_anomaly`, `reconstruction_error`, `score_percentile`, `out_of_range`, `missing`,
`unseen_levels`, `mostly_missing`, `z_0 … z_k`; with
`params={"output": "reconstruction"}` it returns the reconstructed rows in raw units; `params={"explain": k}`
adds the k features with the largest share of each row's score (table models; `Scorer.score`).
Bad input raises an MlflowException with INVALID_PARAMETER_VALUE, which the REST server turns into
a 400 with the message.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from aeops.scoring.bundle import ModelBundle
from aeops.scoring.scorer import InputError, Scorer


class AutoencoderScorer(PythonModel):
    """Artifact `bundle`: the `ModelBundle` folder that `evaluate` wrote (loaded with weights_only=True)."""

    def load_context(self, context: Any) -> None:
        self.scorer = Scorer(ModelBundle.load(context.artifacts["bundle"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        output = (params or {}).get("output", "scores")
        try:
            out = self.scorer.score(model_input, output, explain=(params or {}).get("explain", 0))
        except InputError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        if output == "scores" and len(out) >= 20:  # the server's log says when a batch looks mis-scaled
            lines = self.scorer.batch_warnings(len(out), int((out["out_of_range"] > 0).sum()),
                                               int(out["is_anomaly"].sum()))
            for line in lines:
                logging.getLogger("aeops.serving").warning(line)
        return out


# Logged as "models from code" (this file's path is the python_model): no pickled objects.
mlflow.models.set_model(AutoencoderScorer())
