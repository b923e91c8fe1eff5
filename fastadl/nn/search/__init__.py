"""The search side's modules: MixedOp, SearchCell, the transitions, SearchASPP heads, SuperNet."""
