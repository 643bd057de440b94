"""Using trained models: `predict` on media files, the transformers pipeline, ONNX export."""
