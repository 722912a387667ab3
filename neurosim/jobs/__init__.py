"""Jobs that `neurosuite run` can run: plain functions taking (params, run)."""
