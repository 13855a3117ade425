"""Building blocks a model YAML names: ultralytics' blocks, YOLOv5's and YOLOv7's own, blocks that carry attention."""
