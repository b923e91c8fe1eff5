"""Retraining a genotype's network (``python -m fastadl.train``; cli.py): config and trainer."""
