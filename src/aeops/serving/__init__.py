"""Serving: the MLflow pyfunc that scores raw rows, batch scoring of files, ONNX export."""
