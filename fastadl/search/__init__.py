"""The Auto-DeepLab search (``python -m fastadl.search``; cli.py): configs, the searcher, the
architect, FlatSGD, α/β statistics and plots."""
