"""Scoring trained models: the missing-modality protocol (`scoring`), metrics, reports, plots,
analysis of what a model learned, and audio-visual correspondence metrics."""
