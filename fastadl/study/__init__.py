"""Search-quality studies (``python -m fastadl.study``; cli.py): plans, resumable jobs, reports."""
