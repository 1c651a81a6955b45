"""aeops: reproducible autoencoders for anomaly detection, dimensionality reduction and compression."""

__version__ = "0.1.0"
