"""ultralytics' detection predictor, saving videos as YOLOv5 does (detect.py uses it)."""

from __future__ import annotations

from pathlib import Path

import cv2
from ultralytics.models.yolo.detect import DetectionPredictor


class Mp4Predictor(DetectionPredictor):
    """ultralytics' detection predictor whose annotated videos are ``<name>.mp4`` (codec mp4v), as YOLOv5 writes
    them, instead of ultralytics' ``<name>.avi`` (MJPG) on Linux: ``clip.mp4`` gives ``clip.mp4``. Where OpenCV
    cannot write mp4v, ultralytics' own writer is used."""

    def save_predicted_images(self, save_path: Path, frame: int | None = 0):
        if self.dataset.mode == "video" and save_path not in self.vid_writer:
            im = self.plotted_img
            fps = max(1, self.dataset.fps / self.args.vid_stride)  # skipped frames must not shorten the video
            writer = cv2.VideoWriter(str(Path(save_path).with_suffix(".mp4")), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (im.shape[1], im.shape[0]))
            if writer.isOpened():
                self.vid_writer[save_path] = writer  # ultralytics' method then only writes frames into it
            else:
                writer.release()
        super().save_predicted_images(save_path, frame)
