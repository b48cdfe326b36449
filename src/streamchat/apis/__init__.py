"""The wire APIs: one folder each, with its contract, its stream format and its serving."""
