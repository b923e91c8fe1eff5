"""A trained network in use: inference, evaluation, prediction, export, the fixed-size rule."""
