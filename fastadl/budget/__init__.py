"""Cost of the derived network (latency, multiply-adds, parameters) and its expectation over the
search space: what a search for a budget needs (docs/BUDGET.md)."""
