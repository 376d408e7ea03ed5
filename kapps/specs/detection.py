"""Registry entries of the YOLO family: YOLOv1 and Fast YOLO (Redmon et al. 2016), YOLOv2, Tiny
YOLOv2 and their Darknet-19 backbone (Redmon & Farhadi 2017).

Counts are Keras' (batch normalization: 4 numbers per channel, 2 of them non-trainable moving
statistics; a convolution followed by batch normalization has no bias), which is also the
number of floats in a Darknet weight file (bias, scale, mean, variance, kernel), so the
figures agree with Darknet's. The detectors are registered with their raw grid
(``decode=False``); the registry's canonical models take Pascal VOC's 20 classes.

- ``yolov1``: the paper's Figure 3 with biases and no batch normalization: 271,703,550 =
  60,155,968 in the 24 convolutions + 205,524,992 (7 x 7 x 1024 -> 4096) + 6,022,590
  (4096 -> 7 x 7 x 30); ``tests/test_yolo.py`` sums it layer by layer.
- ``yolov1_fast``: Darknet's ``cfg/yolo-tiny.cfg`` of 2015: 45,089,374.
- ``yolov2``: ``cfg/yolo-voc.cfg``: 50,676,061; with 80 classes (``cfg/yolo.cfg``) the same
  code counts 50,983,561, the total of YAD2K's Keras conversion of Darknet's COCO model.
- ``yolov2_tiny``: ``cfg/tiny-yolo-voc.cfg``: 15,867,885 (the floats in its weight file).
- ``darknet19``: ``cfg/darknet19.cfg`` at 224x224: 20,856,776; 5.58 billion FLOPs, the
  paper's figure ("only requires 5.58 billion operations", section 3).

FLOPs are 2 x multiply-accumulates of convolutions and matrix products (``kapps.flops``).
"""

from kapps.registry import ModelSpec

_YOLOV1 = (
    "Redmon, Divvala, Girshick, Farhadi 2016, You Only Look Once: Unified, Real-Time Object "
    "Detection"
)
_YOLOV2 = "Redmon, Farhadi 2017, YOLO9000: Better, Faster, Stronger"

_V1_TINY = {"input_shape": (64, 64, 3), "grid_size": 2, "num_classes": 3, "width_multiplier": 1 / 64}
# 64x64 -> a 2x2 grid; two anchors, three classes: 2 x (5 + 3) = 16 output channels
_V2_TINY = {
    "input_shape": (64, 64, 3),
    "num_classes": 3,
    "anchors": ((0.2, 0.25), (0.5, 0.4)),
    "width_multiplier": 1 / 32,
}

SPECS = [
    ModelSpec(
        name="yolov1",
        builder="kapps.models.detection.yolo:yolov1",
        task="detection",
        family="YOLO",
        paper=_YOLOV1,
        input_shape=(448, 448, 3),
        params=271_703_550,
        trainable_params=271_703_550,
        published_params=271_703_550,
        published_kind="total",
        published_source=(
            "the paper's Figure 3 network (24 convolutions with biases, no batch "
            "normalization; fully connected 4096 and 7x7x30; 448x448x3 input, S=7, B=2, C=20), "
            "counted exactly layer by layer (tests/test_yolo.py); the paper states no total"
        ),
        flops=40_570_306_560,
        tiny=_V1_TINY,
        tiny_params=19_502,
    ),
    ModelSpec(
        name="yolov1_fast",
        builder="kapps.models.detection.yolo:yolov1_fast",
        task="detection",
        family="YOLO",
        paper=_YOLOV1,
        input_shape=(448, 448, 3),
        params=45_089_374,
        trainable_params=45_089_374,
        published_params=45_089_374,
        published_kind="total",
        published_source=(
            "Fast YOLO as released with the paper: Darknet's cfg/yolo-tiny.cfg "
            "(pjreddie/darknet, commit eaf033c: 9 convolutions of 16 ... 1024 filters, fully "
            "connected 256, 4096 and 1470), counted exactly layer by layer; the paper gives "
            "only 'fewer convolutional layers (9 instead of 24) and fewer filters'"
        ),
        flops=4_837_457_920,
        tiny=_V1_TINY,
        tiny_params=10_016,
    ),
    ModelSpec(
        name="yolov2",
        builder="kapps.models.detection.yolo:yolov2",
        task="detection",
        family="YOLO",
        paper=_YOLOV2,
        input_shape=(416, 416, 3),
        params=50_676_061,
        trainable_params=50_655_389,
        published_params=50_676_061,
        published_kind="total",
        published_source=(
            "YAD2K's Keras conversion of Darknet's YOLOv2 (cfg/yolo.cfg with 80 classes, 425 "
            "outputs) has 50,983,561 parameters (50,962,889 trainable); Darknet's "
            "cfg/yolo-voc.cfg differs only in its last 1x1 convolution (125 outputs), "
            "1024 x 300 + 300 fewer: 50,676,061. This builder with num_classes=80 counts "
            "50,983,561 and 50,962,889 exactly"
        ),
        flops=29_360_334_848,
        tiny=_V2_TINY,
        tiny_params=51_169,
    ),
    ModelSpec(
        name="yolov2_tiny",
        builder="kapps.models.detection.yolo:yolov2_tiny",
        task="detection",
        family="YOLO",
        paper=_YOLOV2,
        input_shape=(416, 416, 3),
        params=15_867_885,
        trainable_params=15_861_773,
        published_params=15_867_885,
        published_kind="total",
        published_source=(
            "Darknet's cfg/tiny-yolo-voc.cfg (9 convolutions, 125 outputs), counted exactly: "
            "15,867,885 (15,861,773 trainable), the total Keras conversions of "
            "tiny-yolo-voc.weights report and the number of floats in that weight file"
        ),
        flops=6_971_041_792,
        tiny=_V2_TINY,
        tiny_params=16_302,
    ),
    ModelSpec(
        name="darknet19",
        builder="kapps.models.detection.yolo:darknet19",
        task="classification",
        family="Darknet",
        paper=_YOLOV2,
        input_shape=(224, 224, 3),
        params=20_856_776,
        trainable_params=20_842_376,
        published_params=20_856_776,
        published_kind="total",
        published_source=(
            "the paper's Table 6 / Darknet's cfg/darknet19.cfg (18 convolutions with batch "
            "normalization, a 1x1 convolution with bias to 1000 classes, global average "
            "pooling), counted exactly layer by layer; the paper gives its 5.58 billion "
            "operations, which the FLOPs here reproduce, but no parameter total"
        ),
        flops=5_581_979_648,
        tiny={"input_shape": (32, 32, 3), "num_classes": 10, "width_multiplier": 1 / 32},
        tiny_params=20_595,
    ),
]
