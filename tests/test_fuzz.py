"""Property-based tests (hypothesis) of the scoring input handling: no input crashes the scorer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode

from aeops.config import ModelConfig
from aeops.models import build_autoencoder
from aeops.scoring.bundle import ModelBundle
from aeops.scoring.rule import ScoringRule
from aeops.scoring.scorer import InputError, Scorer
from aeops.serving.pyfunc import AutoencoderScorer

FEATURES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=2, mlp={"hidden": [8]})
    model = build_autoencoder(cfg, 4)
    scaler = {"kind": "standard", "feature_names": FEATURES, "offset": [0.0] * 4, "scale": [1.0] * 4}
    return Scorer(ModelBundle(
        model_cfg=cfg.model_dump(), n_features=4, image_shape=None, unit_interval=False,
        state_dict=model.state_dict(), scaler=scaler, data_hash="x", scoring=ScoringRule(threshold=0.5),
    ))


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(10**12), 10**12),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
)
columns = st.lists(st.sampled_from([*FEATURES, "e", "a_", "0"]), min_size=0, max_size=6, unique=True)


@st.composite
def frames(draw) -> pd.DataFrame:
    cols = draw(columns)
    n = draw(st.integers(0, 5))
    data = {c: draw(st.lists(values, min_size=n, max_size=n)) for c in cols}
    return pd.DataFrame(data, columns=cols)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=frames(), output=st.sampled_from(["scores", "reconstruction", "other"]))
def test_scorer_answers_or_raises_input_error(scorer, df, output):
    try:
        out = scorer.score(df, output)
    except InputError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert len(out) == len(df) and output in ("scores", "reconstruction")
    assert set(df.columns) == set(FEATURES)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=st.lists(st.floats(-1e6, 1e6, width=32), min_size=4, max_size=4), n=st.integers(1, 4))
def test_valid_rows_always_give_finite_scores(scorer, x, n):
    df = pd.DataFrame([x] * n, columns=FEATURES)
    out = scorer.score(df)
    assert np.isfinite(out[["anomaly_score", "reconstruction_error", "z_0", "z_1"]].to_numpy()).all()
    assert (out["is_anomaly"] == (out["anomaly_score"] > 0.5)).all()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=frames())
def test_pyfunc_turns_bad_input_into_invalid_parameter_value(scorer, df):
    model = AutoencoderScorer()
    model.scorer = scorer
    try:
        scorer.score(df)
        bad = False
    except InputError:
        bad = True
    if not bad:
        assert len(model.predict(None, df)) == len(df)
        return
    with pytest.raises(MlflowException) as err:  # the REST server answers these with 400
        model.predict(None, df)
    assert err.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)
