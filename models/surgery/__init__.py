"""Changing a model YAML: inserting layers with every later ``from`` index remapped."""
