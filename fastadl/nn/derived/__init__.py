"""The retrained (derived) network: AutoDeepLab built from a genotype, its cell, ops and decoder."""
