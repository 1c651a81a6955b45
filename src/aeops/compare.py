"""`aeops compare`: the training runs of the experiment side by side, on the numbers that matter."""

from __future__ import annotations

from typing import Any

import pandas as pd

COLUMNS = {  # MLflow column → header
    "tags.mlflow.runName": "run",
    "tags.data_hash": "data hash",
    "metrics.test/auroc": "AUROC",
    "metrics.vs_baseline/knn_distance/auroc": "kNN AUROC",
    "metrics.test/auprc": "AUPRC",
    "metrics.test/recon_mse": "recon MSE",
    "metrics.val/best_loss": "best val loss",
    "tags.dvc_experiment": "DVC experiment",
    "tags.git_commit": "git commit",
    "start_time": "started",
}


def compare_runs(experiment: str, tracking_uri: str, last: int = 10, data: str | None = None) -> pd.DataFrame:
    """The newest `last` finished training runs (of `data` only, when given), newest first.

    Runs on different data are not comparable: the data hash column says which are.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)  # search_runs below uses the global URI
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame(columns=list(COLUMNS.values()))
    query = "tags.`aeops.stage` = 'train' and attributes.status = 'FINISHED'"
    if data:
        query += " and tags.data = '{}'".format(data.replace("'", "\\'"))
    runs = mlflow.search_runs([exp.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"],
                              max_results=last)
    if runs.empty:
        return pd.DataFrame(columns=list(COLUMNS.values()))
    table = runs.reindex(columns=list(COLUMNS)).rename(columns=COLUMNS)
    table["data hash"] = table["data hash"].astype("string").str[:8]  # a run killed early may lack the tags
    table["git commit"] = table["git commit"].astype("string").str.replace(r"^(\w{8})\w*", r"\1", regex=True)
    table["started"] = pd.to_datetime(table["started"]).dt.strftime("%Y-%m-%d %H:%M")
    return table


def render(table: pd.DataFrame) -> str:
    """Plain-text table (numbers to 4 places), or a line saying there is nothing to compare."""
    if table.empty:
        return "compare: no finished training runs yet; run `make repro`"
    fmt: dict[str, Any] = {c: (lambda v: "—" if pd.isna(v) else f"{v:.4f}") for c in table.columns
                           if pd.api.types.is_numeric_dtype(table[c])}
    return table.to_string(index=False, formatters=fmt, na_rep="—")
