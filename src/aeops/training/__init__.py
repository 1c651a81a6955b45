"""Training: data module, Lightning trainer from params, MLflow tracking."""
