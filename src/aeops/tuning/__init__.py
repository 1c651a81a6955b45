"""Optuna search over architectures and hyperparameters (the `tune` stage)."""
