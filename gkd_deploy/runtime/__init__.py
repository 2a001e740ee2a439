"""One predictor interface over the backends that run a segmenter: torch, onnxruntime, tensorrt.

`load_predictor(path)` picks the backend from the file (a run folder or .safetensors checkpoint:
torch; .onnx: onnxruntime; .engine/.plan: tensorrt). Every predictor maps (B, 3, H, W) float32
RGB 0..255 images to (B, K, H, W) class scores and carries `ModelInfo` (classes, input size,
precision), so `validate`, `infer` and `benchmark` need no other argument.
"""
