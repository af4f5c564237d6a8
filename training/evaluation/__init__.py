"""Honest figures: metrics and calibration tables on held-out artists, artist-disjoint cross-validation on real
paintings, robustness under acquisition conditions, and REPORT.md."""
