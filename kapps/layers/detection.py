"""Detection post-processing layers: non-max suppression inside the model graph.

``NonMaxSuppression`` is TensorFlow-backend only: NMS has no ``keras.ops`` equivalent, so it
calls TensorFlow's NMS op (see ``kapps.boxes.batched_non_max_suppression``). That op is the
TFLite builtin ``NON_MAX_SUPPRESSION_V4``, so a detector with NMS inside converts to TFLite
without Flex ops.
"""

import keras

from kapps import boxes as box_ops


@keras.saving.register_keras_serializable(package="kapps")
class NonMaxSuppression(keras.layers.Layer):
    """Final detections: per-class greedy non-max suppression, padded to a fixed number.

    Each box takes its best class (argmax of its class scores) and that score. Per image,
    boxes scoring above ``score_threshold`` are visited by decreasing score and kept unless a
    kept box of the same class overlaps them with IoU above ``iou_threshold``; at most
    ``max_detections`` are kept. All classes go through one single-class NMS op on boxes
    shifted apart by class (the class-offset trick), the TFLite builtin
    ``NON_MAX_SUPPRESSION_V4``, which also has an XLA kernel (``jit_compile=True`` works). Any
    batch size works: with a static batch of at most 16 (batch 1 at TFLite export) the images
    are unrolled in the graph, otherwise a ``tf.map_fn`` loops over them; both convert to
    TFLite with builtin ops only. The TFLite kernel suppresses at IoU equal to the threshold
    where TensorFlow keeps the box; only such exact ties can differ.

    TensorFlow backend only (NMS has no ``keras.ops`` equivalent); it has no weights.

    Args:
        max_detections: K, detections per image (the outputs' second axis).
        iou_threshold: a box is dropped when its IoU with a kept box of its class is above
            this (YOLO: 0.45).
        score_threshold: boxes scoring this or less are dropped.
        **kwargs: base ``Layer`` arguments (``name``, ...).

    Call arguments:
        inputs: ``(boxes, class_scores)``: ``(batch, N, 4)`` in ``rel_xyxy`` and
            ``(batch, N, num_classes)`` (YOLO: confidence x class probability).

    Returns:
        A dict: ``"boxes"`` float32 ``(batch, K, 4)`` ``rel_xyxy``, ``"scores"`` float32
        ``(batch, K)``, ``"classes"`` int32 ``(batch, K)`` and ``"num_detections"`` int32
        ``(batch,)``; detections by decreasing score, rows from ``num_detections`` on are zeros.

    Example:
        >>> boxes = keras.Input((845, 4))
        >>> scores = keras.Input((845, 20))
        >>> found = NonMaxSuppression(max_detections=10)((boxes, scores))
        >>> found["boxes"].shape, found["num_detections"].shape
        ((None, 10, 4), (None,))

    Paper: greedy NMS as used by YOLO (Redmon et al. 2016, "You Only Look Once: Unified,
    Real-Time Object Detection"; Redmon & Farhadi 2017, "YOLO9000"), IoU threshold 0.45 from
    Darknet's detector.
    """

    def __init__(self, max_detections=100, iou_threshold=0.45, score_threshold=0.25, **kwargs):
        super().__init__(**kwargs)
        box_ops._check_nms_args(max_detections, iou_threshold, score_threshold)
        self.max_detections = max_detections
        self.iou_threshold = float(iou_threshold)
        self.score_threshold = float(score_threshold)

    def call(self, inputs):
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"NonMaxSuppression needs the TensorFlow backend (it calls TensorFlow's NMS op); "
                f"the Keras backend is {keras.backend.backend()!r}."
            )
        boxes, class_scores = self._unpack(inputs)
        found, scores, classes, count = box_ops.batched_non_max_suppression(
            boxes,
            class_scores,
            max_detections=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
        )
        return {"boxes": found, "scores": scores, "classes": classes, "num_detections": count}

    @staticmethod
    def _unpack(inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "NonMaxSuppression expects inputs=(boxes, class_scores), shapes (batch, N, 4) "
                f"and (batch, N, num_classes); received {type(inputs).__name__}."
            )
        return inputs

    def compute_output_shape(self, input_shape):
        boxes_shape, _ = self._unpack(input_shape)
        batch, k = boxes_shape[0], self.max_detections
        return {
            "boxes": (batch, k, 4),
            "scores": (batch, k),
            "classes": (batch, k),
            "num_detections": (batch,),
        }

    def compute_output_spec(self, inputs):
        boxes, class_scores = self._unpack(inputs)
        for name, x, last in (("boxes", boxes, 4), ("class_scores", class_scores, None)):
            if len(x.shape) != 3 or (last is not None and x.shape[-1] not in (None, last)):
                raise ValueError(
                    f"{name} has shape {tuple(x.shape)}; expected (batch, N, "
                    f"{last if last else 'num_classes'})."
                )
        shapes = self.compute_output_shape((boxes.shape, class_scores.shape))
        dtypes = {"boxes": "float32", "scores": "float32", "classes": "int32", "num_detections": "int32"}
        return {key: keras.KerasTensor(shapes[key], dtypes[key]) for key in shapes}

    def get_config(self):
        return {
            **super().get_config(),
            "max_detections": self.max_detections,
            "iou_threshold": self.iou_threshold,
            "score_threshold": self.score_threshold,
        }
