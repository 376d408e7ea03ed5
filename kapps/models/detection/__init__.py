"""Object-detection builders: YOLOv1 (Redmon et al. 2016), YOLOv2 (Redmon & Farhadi 2017) and
their Darknet backbones. Each returns its raw prediction grid, or with ``decode=True`` the
final detections (decoding and non-max suppression inside the model)."""

from kapps.models.detection.yolo import (
    DARKNET19_LAYERS,
    TINY_VOC_ANCHORS,
    VOC_ANCHORS,
    YOLOV1_CONFIGS,
    YOLOV2_CONFIGS,
    darknet19,
    yolov1,
    yolov1_fast,
    yolov2,
    yolov2_tiny,
)

__all__ = [
    "DARKNET19_LAYERS",
    "TINY_VOC_ANCHORS",
    "VOC_ANCHORS",
    "YOLOV1_CONFIGS",
    "YOLOV2_CONFIGS",
    "darknet19",
    "yolov1",
    "yolov1_fast",
    "yolov2",
    "yolov2_tiny",
]
