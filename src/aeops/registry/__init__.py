"""MLflow Model Registry: register the scoring model, promote it by alias behind a quality gate."""
