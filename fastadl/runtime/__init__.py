"""What the search and the retraining share: the loop skeleton and its hooks, steps, loaders,
validation, configs, the command line, distributed and precision helpers; ``rundir/``: what
a run directory holds."""
