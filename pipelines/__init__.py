"""DVC stages: one thin script per stage of dvc.yaml (run as ``python -m pipelines.NAME``)."""
