"""Model side of the project: registry, parser, heads and attention modules."""
