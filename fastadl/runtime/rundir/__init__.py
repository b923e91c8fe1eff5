"""A run directory's contents: checkpoints, config.json, metrics.jsonl, telemetry.jsonl, plots."""
