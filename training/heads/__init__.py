"""Pair heads: the trained kinds (Keras, trained on pairs) and the fitted `cosine` head (whitening, nuisance-aware
whitening, calibrated cosine) — the kinds contract/heads.py registers."""
