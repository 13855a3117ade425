"""The glue to the ultralytics engine: our trainer and validator, run folders, the run's model YAML, training checks."""
