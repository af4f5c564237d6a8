"""Serving: everything that runs the model on a request — the bundle (model, gallery view, calibrator, quality
rules, built together and swapped as one), ONNX sessions, micro-batching, scoring, calibration, evidence maps and
thumbnails. No HTTP here (service/api/), no SQL (service/storage/)."""
