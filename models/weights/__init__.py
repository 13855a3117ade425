"""Checkpoints: restricted unpickling, formats, other projects' models rebuilt as ours, weight transfer."""
