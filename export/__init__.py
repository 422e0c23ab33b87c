"""Builds deployment artifacts from a checkpoint: ONNX, typed ONNX, TensorRT engines, manifests, parity."""
