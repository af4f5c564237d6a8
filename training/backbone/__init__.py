"""The backbone: Keras architectures and their ImageNet weights (read without torch), the embedding cache, and the
export to ONNX with its parity checks."""
