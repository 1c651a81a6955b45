"""Evaluation on numpy arrays: metrics, classical baselines and plots.

Baselines are PCA, Isolation Forest and kNN distance. Submodules are imported explicitly
(`aeops.evaluation.metrics`, `.baselines`, `.plots`) so importing this package stays cheap.
"""
