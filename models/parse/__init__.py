"""A model YAML's way to modules, one direction: read (file -> checked dict) -> plan (rows resolved) -> build."""
