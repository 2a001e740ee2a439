"""One predictor interface over the backends that run a segmenter: torch, onnxruntime, tensorrt.

`load_predictor(path)` picks the backend from the file (a run folder or .safetensors checkpoint:
torch; .onnx: onnxruntime; .engine/.plan: tensorrt). Every predictor maps (B, 3, H, W) float32
RGB 0..255 numpy images to (B, K, H, W) class scores (`predictor(images)`) and to (B, H, W) uint8
labels (`predictor.labels(images)`, the file's own labels output where it has one), and carries
`ModelInfo` (classes, input size, precision, outputs), so `validate`, `infer` and `benchmark` need
no other argument. An instance model (`ModelInfo.task == "instance"`) gets an `InstancePredictor`
instead: images -> the K masks, classes and scores of each image. The onnxruntime predictor imports neither torch nor onnx: an edge install
without them runs exported files.
"""
