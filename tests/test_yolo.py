"""YOLOv1, Fast YOLO, YOLOv2, Tiny YOLOv2 and Darknet-19: the published parameter counts (the
paper's YOLOv1 summed layer by layer), the architectures' shapes at several input sizes, the
passthrough Reorg against tf.nn.space_to_depth, the decode layers and both losses against NumPy
references (and by-hand cases), detections out of ``decode=True`` models, a tiny YOLOv2 that
overfits one image, and argument errors. The tiny models' full contract (TFLite parity,
MirroredStrategy step, .keras round trip) runs in tests/test_contract.py.

Canonical models are built once each (yolov1 has 271.7 million parameters, about 1 GB) and never
run forward."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kapps import registry, testing
from kapps.layers import ConvBNAct
from kapps.layers.yolo import Reorg, YOLOv1Decode, YOLOv2Decode, space_to_depth
from kapps.losses import YOLOv1Loss, YOLOv2Loss
from kapps.models.detection import (
    TINY_VOC_ANCHORS,
    VOC_ANCHORS,
    darknet19,
    yolov1,
    yolov1_fast,
    yolov2,
    yolov2_tiny,
)

ANCHORS = ((0.2, 0.25), (0.5, 0.4))
SMALL_V2 = {"num_classes": 3, "anchors": ANCHORS, "width_multiplier": 1 / 32}
SMALL_V1 = {"grid_size": 2, "num_classes": 3, "width_multiplier": 1 / 64}


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _images(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype="float32")


def _layers(model, prefix):
    return [layer for layer in model.layers if layer.name.startswith(prefix)]


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# -- canonical counts -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def canonical_yolov1():
    model = yolov1()
    yield model
    del model
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def canonical_yolov2():
    return yolov2()


def test_yolov1_is_figure_3_counted_layer_by_layer(canonical_yolov1):
    """The paper's Figure 3 with biases and no batch normalization, 448x448x3 -> 7x7x30:

    ====  ======  ===========  ==========================================
    conv  kernel  in -> out    parameters (k * k * in * out + out)
    ====  ======  ===========  ==========================================
    1     7x7/2   3 -> 64      9,472
    2     3x3     64 -> 192    110,784
    3     1x1     192 -> 128   24,704
    4     3x3     128 -> 256   295,168
    5     1x1     256 -> 256   65,792
    6     3x3     256 -> 512   1,180,160
    7-14  4 x (1x1 512 -> 256: 131,328; 3x3 256 -> 512: 1,180,160) = 5,245,952
    15    1x1     512 -> 512   262,656
    16    3x3     512 -> 1024  4,719,616
    17-20 2 x (1x1 1024 -> 512: 524,800; 3x3 512 -> 1024: 4,719,616) = 10,488,832
    21-24 4 x 3x3 1024 -> 1024 (the second of stride 2): 4 x 9,438,208 = 37,752,832
    ====  ======  ===========  ==========================================

    Convolutions: 60,155,968. Fully connected: 7 * 7 * 1024 * 4096 + 4096 = 205,524,992 and
    4096 * 1470 + 1470 = 6,022,590. Total 271,703,550.
    """
    convs = [(7, 3, 64), (3, 64, 192), (1, 192, 128), (3, 128, 256), (1, 256, 256), (3, 256, 512)]
    convs += [(1, 512, 256), (3, 256, 512)] * 4 + [(1, 512, 512), (3, 512, 1024)]
    convs += [(1, 1024, 512), (3, 512, 1024)] * 2 + [(3, 1024, 1024)] * 4
    expected = [k * k * i * o + o for k, i, o in convs]
    assert sum(expected) == 60_155_968
    model = canonical_yolov1
    conv_layers = [model.get_layer(f"conv{i}") for i in range(1, 25)]
    assert [layer.count_params() for layer in conv_layers] == expected
    assert not _layers(model, "conv25") and not any(
        isinstance(w, keras.layers.BatchNormalization) for w in model._flatten_layers()
    )
    assert model.get_layer("fc1").count_params() == 205_524_992
    assert model.get_layer("predictions").count_params() == 6_022_590
    assert model.get_layer("dropout").rate == 0.5
    assert model.count_params() == 271_703_550 == registry.get_spec("yolov1").params
    assert tuple(model.output.shape) == (None, 7, 7, 30)
    assert tuple(model.get_layer("conv24_leaky").output.shape) == (None, 7, 7, 1024)


def test_yolov2_voc_count_and_coco_equivalent(canonical_yolov2):
    """yolo-voc.cfg: 50,676,061 (50,655,389 trainable). YAD2K's Keras conversion of Darknet's
    COCO model (80 classes: 425 outputs) reports 50,983,561 (50,962,889 trainable); only the
    last 1x1 convolution differs: 1024 x 300 + 300 more."""
    model = canonical_yolov2
    total, trainable = testing.count_params(model)
    assert (total, trainable) == (50_676_061, 50_655_389)
    head = model.get_layer("predictions")
    assert head.count_params() == 1024 * 125 + 125
    coco_extra = 1024 * 300 + 300
    assert (total + coco_extra, trainable + coco_extra) == (50_983_561, 50_962_889)
    shape = lambda name: tuple(model.get_layer(name).output.shape)  # noqa: E731
    assert shape("conv13_leaky") == (None, 26, 26, 512)  # the passthrough's source
    assert shape("passthrough_conv_leaky") == (None, 26, 26, 64)
    assert shape("passthrough_reorg") == (None, 13, 13, 256)
    assert shape("passthrough_concat") == (None, 13, 13, 1280)
    assert tuple(model.output.shape) == (None, 13, 13, 125)
    assert len([l for l in model.layers if isinstance(l, ConvBNAct)]) == 22


def test_fast_yolo_and_tiny_yolov2_tables():
    """Widths-independent structure at the canonical sizes (tiny widths, nothing runs), and
    the canonical counts recomputed from Darknet's cfg files layer by layer."""
    fast = yolov1_fast(width_multiplier=1 / 64)
    assert len(_layers(fast, "conv")) == 9 * 2  # ConvBNAct + LeakyReLU each
    assert tuple(fast.get_layer("conv9_leaky").output.shape)[1:3] == (7, 7)
    assert [l.name for l in fast.layers if isinstance(l, keras.layers.Dense)] == ["fc1", "fc2", "predictions"]
    # cfg/yolo-tiny.cfg: 3x3 convolutions with biases, then 7*7*1024 -> 256 -> 4096 -> 1470
    widths = [3, 16, 32, 64, 128, 256, 512, 1024, 1024, 1024]
    convs = sum(9 * i * o + o for i, o in zip(widths, widths[1:]))
    dense = (7 * 7 * 1024 * 256 + 256) + (256 * 4096 + 4096) + (4096 * 1470 + 1470)
    assert convs + dense == registry.get_spec("yolov1_fast").params == 45_089_374

    tiny = yolov2_tiny(width_multiplier=1 / 64)
    pools = [l for l in tiny.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert [l.strides for l in pools] == [(2, 2)] * 5 + [(1, 1)]
    assert tuple(tiny.output.shape) == (None, 13, 13, 125)
    assert len([l for l in tiny.layers if isinstance(l, (ConvBNAct, keras.layers.Conv2D))]) == 9
    # cfg/tiny-yolo-voc.cfg: batch-normalized 3x3 convolutions (4 numbers per channel), then
    # a 1x1 convolution with bias to 125
    widths = [3, 16, 32, 64, 128, 256, 512, 1024, 1024]
    convs = sum(9 * i * o + 4 * o for i, o in zip(widths, widths[1:]))
    assert convs + 1024 * 125 + 125 == registry.get_spec("yolov2_tiny").params == 15_867_885
    assert not _layers(tiny, "decode")  # the raw grid


def test_darknet19_classifier_and_features():
    model = darknet19(num_classes=10, input_shape=(None, None, 3), width_multiplier=1 / 32)
    assert len([l for l in model.layers if isinstance(l, ConvBNAct)]) == 18
    assert model.get_layer("predictions").use_bias  # the 19th convolution
    assert _np(model(_images((2, 64, 64, 3)))).shape == (2, 10)
    features = darknet19(include_top=False, input_shape=(224, 224, 3), width_multiplier=1 / 32)
    assert tuple(features.output.shape) == (None, 7, 7, 32)
    pooled = darknet19(include_top=False, pooling="avg", width_multiplier=1 / 32)
    assert tuple(pooled.output.shape) == (None, 32)
    # Table 6: 3x3 and 1x1 convolutions with batch normalization, then 1x1 to 1000 with bias
    convs = [(3, 3, 32), (3, 32, 64), (3, 64, 128), (1, 128, 64), (3, 64, 128), (3, 128, 256)]
    convs += [(1, 256, 128), (3, 128, 256), (3, 256, 512), (1, 512, 256), (3, 256, 512)]
    convs += [(1, 512, 256), (3, 256, 512), (3, 512, 1024), (1, 1024, 512), (3, 512, 1024)]
    convs += [(1, 1024, 512), (3, 512, 1024)]
    count = sum(k * k * i * o + 4 * o for k, i, o in convs) + 1024 * 1000 + 1000
    assert count == registry.get_spec("darknet19").params


def test_anchor_constants():
    assert len(VOC_ANCHORS) == len(TINY_VOC_ANCHORS) == 5
    np.testing.assert_allclose(np.asarray(VOC_ANCHORS)[0] * 13, [1.3221, 1.73145])
    np.testing.assert_allclose(np.asarray(VOC_ANCHORS)[-1] * 13, [11.2364, 10.0071])
    np.testing.assert_allclose(np.asarray(TINY_VOC_ANCHORS)[-1] * 13, [16.62, 10.52])


# -- shapes ---------------------------------------------------------------------------------


def test_yolov2_any_multiple_of_32_and_unknown_sizes():
    model = yolov2(input_shape=(None, None, 3), **SMALL_V2)
    assert tuple(model.output.shape) == (None, None, None, 16)
    for height, width in ((64, 64), (96, 128), (160, 96)):
        out = _np(model(_images((1, height, width, 3))))
        assert out.shape == (1, height // 32, width // 32, 16) and np.all(np.isfinite(out))
    assert tuple(yolov2(input_shape=(320, 608, 3), **SMALL_V2).output.shape) == (None, 10, 19, 16)
    tiny = yolov2_tiny(input_shape=(None, None, 3), **SMALL_V2)
    assert _np(tiny(_images((2, 96, 64, 3)))).shape == (2, 3, 2, 16)


def test_yolov1_shapes():
    model = yolov1(input_shape=(128, 192, 3), grid_size=3, boxes_per_cell=3, num_classes=4, width_multiplier=1 / 64)
    assert tuple(model.get_layer("conv24_leaky").output.shape)[1:3] == (2, 3)
    assert _np(model(_images((2, 128, 192, 3)))).shape == (2, 3, 3, 19)
    bn = yolov1(input_shape=(64, 64, 3), batch_norm=True, **SMALL_V1)
    assert isinstance(bn.get_layer("conv1").bn, keras.layers.BatchNormalization)
    assert not bn.get_layer("conv1").conv.use_bias


# -- layers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stride,shape", [(2, (2, 8, 12, 5)), (3, (1, 9, 6, 2))])
def test_reorg_is_space_to_depth(stride, shape):
    x = _images(shape)
    expected = tf.nn.space_to_depth(x, stride).numpy()
    np.testing.assert_array_equal(_np(Reorg(stride)(x)), expected)
    # unknown sizes in a graph
    spec = tf.TensorSpec((None, None, None, shape[-1]))
    fn = tf.function(lambda t: space_to_depth(t, stride), input_signature=[spec])
    np.testing.assert_array_equal(fn(x).numpy(), expected)
    assert Reorg(stride).compute_output_shape((None, None, 12, 4)) == (None, None, 12 // stride, 4 * stride**2)


def _np_v2_decode(raw, anchors, classes):
    b, h, w, _ = raw.shape
    a = len(anchors)
    grid = raw.reshape(b, h, w, a, 5 + classes)
    boxes, scores = np.zeros((b, h, w, a, 4)), np.zeros((b, h, w, a, classes))
    for n in range(b):
        for i in range(h):
            for j in range(w):
                for k in range(a):
                    tx, ty, tw, th, to = grid[n, i, j, k, :5]
                    cx, cy = (_sigmoid(tx) + j) / w, (_sigmoid(ty) + i) / h
                    bw, bh = anchors[k][0] * np.exp(tw), anchors[k][1] * np.exp(th)
                    boxes[n, i, j, k] = np.clip([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 0, 1)
                    logits = grid[n, i, j, k, 5:]
                    probs = np.exp(logits - logits.max())
                    scores[n, i, j, k] = _sigmoid(to) * probs / probs.sum()
    return boxes.reshape(b, -1, 4), scores.reshape(b, -1, classes)


def test_yolov2_decode_matches_numpy():
    raw = np.random.default_rng(1).normal(size=(2, 3, 4, 2 * 8)).astype("float32")
    boxes, scores = YOLOv2Decode(ANCHORS, num_classes=3)(raw)
    ref_boxes, ref_scores = _np_v2_decode(raw.astype("float64"), ANCHORS, 3)
    np.testing.assert_allclose(_np(boxes), ref_boxes, atol=1e-6)
    np.testing.assert_allclose(_np(scores), ref_scores, atol=1e-6)
    assert YOLOv2Decode(ANCHORS, 3).compute_output_shape((None, None, None, 16)) == ((None, None, 4), (None, None, 3))


def test_yolov1_decode_matches_numpy():
    s, b, c = 3, 2, 4
    raw = np.random.default_rng(2).uniform(-0.2, 1.2, size=(2, s, s, b * 5 + c)).astype("float32")
    boxes, scores = YOLOv1Decode(s, b, c)(raw)
    ref_boxes, ref_scores = [], []
    for n in range(2):
        for i in range(s):
            for j in range(s):
                probs = np.clip(raw[n, i, j, b * 5 :], 0, 1)
                for k in range(b):
                    x, y, sw, sh, conf = raw[n, i, j, 5 * k : 5 * k + 5].astype("float64")
                    cx, cy, w, h = (j + x) / s, (i + y) / s, sw**2, sh**2
                    ref_boxes.append(np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, 1))
                    ref_scores.append(np.clip(conf, 0, 1) * probs)
    np.testing.assert_allclose(_np(boxes), np.reshape(ref_boxes, (2, -1, 4)), atol=1e-6)
    np.testing.assert_allclose(_np(scores), np.reshape(ref_scores, (2, -1, c)), atol=1e-6)


def test_decode_true_gives_detections_and_round_trips(tmp_path):
    raw = yolov2(input_shape=(64, 64, 3), **SMALL_V2)
    model = yolov2(input_shape=(64, 64, 3), decode=True, max_detections=7, score_threshold=0.0, **SMALL_V2)
    model.set_weights(raw.get_weights())
    images = _images((2, 64, 64, 3))
    found = model(images)
    assert set(found) == {"boxes", "scores", "classes", "num_detections"}
    shapes = {k: tuple(v.shape) for k, v in found.items()}
    assert shapes == {"boxes": (2, 7, 4), "scores": (2, 7), "classes": (2, 7), "num_detections": (2,)}
    dtypes = {k: keras.backend.standardize_dtype(v.dtype) for k, v in found.items()}
    assert dtypes == {"boxes": "float32", "scores": "float32", "classes": "int32", "num_detections": "int32"}
    # the same as decoding the raw model's grid and suppressing by hand
    boxes, scores = model.get_layer("decode")(raw(images))
    nms = model.get_layer("nms")((boxes, scores))
    for key in found:
        np.testing.assert_array_equal(_np(found[key]), _np(nms[key]))
    counts = _np(found["num_detections"])
    assert np.all(counts >= 1) and np.all(_np(found["scores"])[0, counts[0] :] == 0)
    assert np.all(np.diff(_np(found["scores"])[0, : counts[0]]) <= 0)
    testing.check_config(model)
    testing.check_keras_roundtrip(model, images, directory=tmp_path)

    v1 = yolov1(input_shape=(64, 64, 3), decode=True, score_threshold=0.0, **SMALL_V1)
    out = v1(images)
    assert tuple(out["boxes"].shape) == (2, 100, 4) and isinstance(v1.get_layer("decode"), YOLOv1Decode)
    testing.check_config(v1)


# -- losses ---------------------------------------------------------------------------------


def _targets(rows, batch=1, slots=4):
    y = np.full((batch, slots, 5), -1.0, np.float32)
    for n, image_rows in enumerate(rows):
        y[n, : len(image_rows)] = image_rows
    return y


def _np_v1_loss(y_true, y_pred, s, b, c, lambda_coord=5.0, lambda_noobj=0.5, rescore=True):
    """YOLOv1's equation 3 with explicit loops."""
    losses = []
    for n in range(len(y_true)):
        owner = {}
        for x0, y0, x1, y1, label in y_true[n]:
            if label < 0 or x1 <= x0 or y1 <= y0:
                continue
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            cell = (min(max(int(math.floor(cy * s)), 0), s - 1), min(max(int(math.floor(cx * s)), 0), s - 1))
            owner.setdefault(cell, (x0, y0, x1, y1, int(label)))  # the first object of a cell
        loss = 0.0
        for i in range(s):
            for j in range(s):
                preds = y_pred[n, i, j, : 5 * b].reshape(b, 5).astype("float64")
                probs = y_pred[n, i, j, 5 * b :].astype("float64")
                responsible = -1
                if (i, j) in owner:
                    x0, y0, x1, y1, label = owner[(i, j)]
                    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
                    ious, errors = [], []
                    for x, y, sw, sh, _ in preds:
                        pcx, pcy, pw, ph = (j + x) / s, (i + y) / s, sw**2, sh**2
                        ious.append(_iou([pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2], [x0, y0, x1, y1]))
                        errors.append((pcx - cx) ** 2 + (pcy - cy) ** 2 + (pw - w) ** 2 + (ph - h) ** 2)
                    responsible = int(np.argmax(ious)) if max(ious) > 0 else int(np.argmin(errors))
                    x, y, sw, sh, conf = preds[responsible]
                    loss += lambda_coord * (
                        (x - (cx * s - j)) ** 2 + (y - (cy * s - i)) ** 2
                        + (sw - math.sqrt(w)) ** 2 + (sh - math.sqrt(h)) ** 2
                    )
                    loss += (conf - (ious[responsible] if rescore else 1.0)) ** 2
                    loss += np.sum((probs - np.eye(c)[label]) ** 2)
                for k in range(b):
                    if k != responsible:
                        loss += lambda_noobj * preds[k, 4] ** 2
        losses.append(loss)
    return np.mean(losses)


def _np_v2_loss(y_true, y_pred, anchors, c, lambda_coord=1.0, lambda_obj=5.0, lambda_noobj=1.0,
                lambda_class=1.0, ignore_threshold=0.6, rescore=False):
    """Darknet's region-layer loss with explicit loops."""
    _, h, w, _ = y_pred.shape
    a = len(anchors)
    losses = []
    for n in range(len(y_true)):
        grid = y_pred[n].reshape(h, w, a, 5 + c).astype("float64")
        objects = [row for row in y_true[n] if row[4] >= 0 and row[2] > row[0] and row[3] > row[1]]
        owner = {}
        for x0, y0, x1, y1, label in objects:
            cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
            i, j = min(max(int(cy * h), 0), h - 1), min(max(int(cx * w), 0), w - 1)
            shape_iou = [
                min(bw, pw) * min(bh, ph) / (bw * bh + pw * ph - min(bw, pw) * min(bh, ph)) for pw, ph in anchors
            ]
            owner[(i, j, int(np.argmax(shape_iou)))] = (x0, y0, x1, y1, int(label))  # the last wins
        loss = 0.0
        for i in range(h):
            for j in range(w):
                for k in range(a):
                    tx, ty, tw, th, to = grid[i, j, k, :5]
                    pcx, pcy = (_sigmoid(tx) + j) / w, (_sigmoid(ty) + i) / h
                    pw, ph = anchors[k][0] * np.exp(tw), anchors[k][1] * np.exp(th)
                    box = [pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2]
                    objectness = _sigmoid(to)
                    if (i, j, k) in owner:
                        x0, y0, x1, y1, label = owner[(i, j, k)]
                        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
                        scale = 2 - bw * bh
                        loss += lambda_coord * scale * (
                            (_sigmoid(tx) - (cx * w - j)) ** 2 + (_sigmoid(ty) - (cy * h - i)) ** 2
                            + (tw - math.log(bw / anchors[k][0])) ** 2 + (th - math.log(bh / anchors[k][1])) ** 2
                        )
                        target = _iou(box, [x0, y0, x1, y1]) if rescore else 1.0
                        loss += lambda_obj * (objectness - target) ** 2
                        logits = grid[i, j, k, 5:]
                        log_probs = logits - logits.max() - np.log(np.sum(np.exp(logits - logits.max())))
                        loss -= lambda_class * log_probs[label]
                    else:
                        best = max([_iou(box, row[:4]) for row in objects] or [0.0])
                        if best < ignore_threshold:
                            loss += lambda_noobj * objectness**2
        losses.append(loss)
    return np.mean(losses)


def _value(loss, y_true, y_pred):
    return float(_np(loss(y_true, y_pred)))


def test_yolov1_loss_by_hand():
    """S = 1, B = 1, C = 1: the box is predicted exactly (IoU 1), confidence 0.5, P(class)
    0.5: (0.5 - 1)^2 for the confidence plus (0.5 - 1)^2 for the class = 0.5."""
    y = _targets([[[0.25, 0.25, 0.75, 0.75, 0]]])
    pred = np.array([0.5, 0.5, math.sqrt(0.5), math.sqrt(0.5), 0.5, 0.5], np.float32).reshape(1, 1, 1, 6)
    loss = YOLOv1Loss(grid_size=1, boxes_per_cell=1, num_classes=1)
    terms = {k: float(_np(v)[0]) for k, v in loss.terms(y, pred).items()}
    assert terms == pytest.approx({"coord": 0.0, "object": 0.25, "no_object": 0.0, "class": 0.25}, abs=1e-6)
    assert _value(loss, y, pred) == pytest.approx(0.5, abs=1e-6)


def test_yolov1_loss_matches_numpy_and_perfect_prediction():
    s, b, c = 3, 2, 4
    rng = np.random.default_rng(3)
    y = _targets(
        [
            [[0.1, 0.1, 0.3, 0.5, 1], [0.5, 0.4, 0.9, 0.95, 3], [0.15, 0.05, 0.2, 0.3, 2]],  # two in cell (0, 0)
            [[0.4, 0.4, 0.6, 0.6, 0]],
        ],
        batch=2,
    )
    pred = np.concatenate(
        [rng.uniform(0, 1, (2, s, s, 5 * b)), rng.uniform(-0.2, 1, (2, s, s, c))], axis=-1
    ).astype("float32")
    pred[1, 1, 1, :10] = [0.0, 0.0, 0.05, 0.05, 0.7, 0.05, 0.1, 0.05, 0.05, 0.3]  # no overlap: smallest error
    for rescore in (True, False):
        loss = YOLOv1Loss(grid_size=s, boxes_per_cell=b, num_classes=c, rescore=rescore)
        expected = _np_v1_loss(y, pred, s, b, c, rescore=rescore)
        assert _value(loss, y, pred) == pytest.approx(expected, rel=1e-5)
    # padding rows and rows of class -1 are ignored; the second object of a cell is not trained
    loss = YOLOv1Loss(grid_size=s, boxes_per_cell=b, num_classes=c)
    y_more = np.concatenate([y, [[[0.2, 0.2, 0.6, 0.6, -1]], [[-1, -1, -1, -1, -1]]]], axis=1).astype("float32")
    assert _value(loss, y_more, pred) == pytest.approx(_value(loss, y, pred), rel=1e-6)
    y_first = y.copy()
    y_first[0, 2] = -1
    assert _value(loss, y_first, pred) == pytest.approx(_value(loss, y, pred), rel=1e-6)

    # a perfect prediction: responsible boxes exact with confidence 1, class one-hot, others 0
    perfect = np.zeros((2, s, s, 5 * b + c), np.float32)
    for n, objects in enumerate([y[0, :2], y[1, :1]]):
        for x0, y0, x1, y1, label in objects:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            i, j = int(cy * s), int(cx * s)
            perfect[n, i, j, :5] = [cx * s - j, cy * s - i, math.sqrt(x1 - x0), math.sqrt(y1 - y0), 1.0]
            perfect[n, i, j, 5 * b + int(label)] = 1.0
    terms = {k: _np(v) for k, v in loss.terms(y, perfect).items()}
    for key in terms:
        np.testing.assert_allclose(terms[key], 0.0, atol=1e-10, err_msg=key)


def test_yolov2_loss_by_hand():
    """A 1x1 grid, one anchor (0.5, 0.5), an object (0.25, 0.25, 0.75, 0.75) of class 1.
    Predicted: tx = ty = 0 (centre exact), tw = th = log 2 (a whole-image box), to = 0,
    class logits (0, 0). Coordinates: (2 - 0.25) x 2 log(2)^2; objectness: 5 (0.5 - 1)^2 =
    1.25, or with rescore (IoU 0.25) 5 (0.5 - 0.25)^2 = 0.3125; classes: log 2."""
    y = _targets([[[0.25, 0.25, 0.75, 0.75, 1]]])
    pred = np.array([0, 0, math.log(2), math.log(2), 0, 0, 0], np.float32).reshape(1, 1, 1, 7)
    terms = {k: float(_np(v)[0]) for k, v in YOLOv2Loss([(0.5, 0.5)], num_classes=2).terms(y, pred).items()}
    expected = {"coord": 1.75 * 2 * math.log(2) ** 2, "object": 1.25, "no_object": 0.0, "class": math.log(2)}
    assert terms == pytest.approx(expected, rel=1e-5)
    rescored = YOLOv2Loss([(0.5, 0.5)], num_classes=2, rescore=True).terms(y, pred)["object"]
    assert float(_np(rescored)[0]) == pytest.approx(0.3125, rel=1e-5)


def test_yolov2_loss_matches_numpy_and_perfect_prediction():
    rng = np.random.default_rng(4)
    a, c = len(ANCHORS), 3
    y = _targets(
        [
            [[0.05, 0.1, 0.3, 0.3, 0], [0.4, 0.3, 0.95, 0.75, 2], [0.1, 0.12, 0.28, 0.35, 1]],  # 1st and 3rd collide
            [[0.3, 0.3, 0.7, 0.6, 1]],
        ],
        batch=2,
    )
    for grid in ((2, 2), (3, 2)):
        pred = rng.normal(0, 1, (2, *grid, a * (5 + c))).astype("float32")
        for kwargs in ({}, {"rescore": True, "ignore_threshold": 0.3, "lambda_coord": 2.0, "lambda_class": 0.5}):
            loss = YOLOv2Loss(ANCHORS, num_classes=c, **kwargs)
            assert _value(loss, y, pred) == pytest.approx(_np_v2_loss(y, pred, ANCHORS, c, **kwargs), rel=1e-5)

    # the last of two objects on one predictor takes it: coordinates, objectness and class
    # terms are those of the last alone (the first still counts for the ignore mask)
    loss = YOLOv2Loss(ANCHORS, num_classes=c)
    pred = rng.normal(0, 1, (2, 2, 2, a * (5 + c))).astype("float32")
    y_last = y.copy()
    y_last[0, 0] = -1
    both, last = loss.terms(y, pred), loss.terms(y_last, pred)
    for key in ("coord", "object", "class"):
        np.testing.assert_allclose(_np(both[key]), _np(last[key]), rtol=1e-6)
    y_pad = np.concatenate([y, np.full((2, 3, 5), -1, np.float32)], axis=1)
    assert _value(loss, y_pad, pred) == pytest.approx(_value(loss, y, pred), rel=1e-6)

    # a perfect prediction: assigned predictors exact, confident and sure of the class; the
    # others silent
    y_one = _targets([[[0.05, 0.1, 0.3, 0.3, 0], [0.4, 0.3, 0.95, 0.75, 2]]])
    perfect = np.zeros((1, 2, 2, a, 5 + c), np.float32)
    perfect[..., 4] = -30.0
    for x0, y0, x1, y1, label in y_one[0, :2]:
        cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        i, j = int(cy * 2), int(cx * 2)
        inter = [min(w, pw) * min(h, ph) for pw, ph in ANCHORS]
        k = int(np.argmax([o / (w * h + pw * ph - o) for o, (pw, ph) in zip(inter, ANCHORS)]))
        logit = lambda p: math.log(p / (1 - p))  # noqa: E731
        tw, th = math.log(w / ANCHORS[k][0]), math.log(h / ANCHORS[k][1])
        perfect[0, i, j, k, :5] = [logit(cx * 2 - j), logit(cy * 2 - i), tw, th, 30.0]
        perfect[0, i, j, k, 5:] = -30.0
        perfect[0, i, j, k, 5 + int(label)] = 30.0
    terms = {k: float(_np(v)[0]) for k, v in loss.terms(y_one, perfect.reshape(1, 2, 2, -1)).items()}
    assert terms == pytest.approx({"coord": 0.0, "object": 0.0, "no_object": 0.0, "class": 0.0}, abs=1e-8)


def test_losses_have_finite_gradients_and_dynamic_grids():
    y = _targets([[[0.1, 0.1, 0.5, 0.4, 1], [0.6, 0.5, 0.9, 0.95, 0]]], batch=1)
    v2 = YOLOv2Loss(ANCHORS, num_classes=3)
    # extreme raw values (exp overflow territory) still give finite values and gradients
    raw = tf.Variable(np.random.default_rng(5).normal(0, 40, (1, 2, 2, 16)).astype("float32"))
    v1 = YOLOv1Loss(grid_size=2, boxes_per_cell=2, num_classes=3)
    raw1 = tf.Variable(np.random.default_rng(6).normal(0, 2, (1, 2, 2, 13)).astype("float32"))
    for loss, variable in ((v2, raw), (v1, raw1)):
        with tf.GradientTape() as tape:
            value = loss(y, variable)
        grad = tape.gradient(value, variable).numpy()
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad)) and np.any(grad != 0)
    # one traced function for every grid size (multi-scale training)
    fn = tf.function(v2, input_signature=[tf.TensorSpec((None, None, 5)), tf.TensorSpec((None, None, None, 16))])
    for grid in ((2, 2), (3, 4)):
        pred = np.random.default_rng(7).normal(0, 1, (1, *grid, 16)).astype("float32")
        assert float(fn(y, pred)) == pytest.approx(_value(v2, y, pred), rel=1e-6)


def test_loss_configs_and_errors():
    losses = (YOLOv1Loss(grid_size=3, lambda_noobj=0.25, rescore=False), YOLOv2Loss(ANCHORS, 3, ignore_threshold=0.5))
    for loss in losses:
        config = loss.get_config()
        clone = type(loss).from_config(config)
        assert clone.get_config() == config
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        assert restored.get_config() == config
    with pytest.raises(ValueError, match="lambda_coord=-1"):
        YOLOv1Loss(lambda_coord=-1)
    with pytest.raises(ValueError, match="grid_size=0"):
        YOLOv1Loss(grid_size=0)
    with pytest.raises(ValueError, match="anchors="):
        YOLOv2Loss([(0.1, -0.2)], 3)
    with pytest.raises(ValueError, match="ignore_threshold=1.5"):
        YOLOv2Loss(ANCHORS, 3, ignore_threshold=1.5)
    with pytest.raises(ValueError, match="rescore='yes'"):
        YOLOv2Loss(ANCHORS, 3, rescore="yes")
    y = _targets([[[0.1, 0.1, 0.5, 0.4, 1]]])
    with pytest.raises(ValueError, match=r"expects \(batch, H, W, 16\)"):
        YOLOv2Loss(ANCHORS, 3)(y, np.zeros((1, 2, 2, 15), np.float32))
    with pytest.raises(ValueError, match=r"expects \(batch, 7, 7, 30\)"):
        YOLOv1Loss()(y, np.zeros((1, 7, 7, 25), np.float32))


# -- training -------------------------------------------------------------------------------


def test_tiny_yolov2_overfits_one_image():
    """100 Adam steps on one 64x64 image with two boxes (different cells and classes): the loss
    falls by a large factor and the decode=True model with the same weights finds both boxes
    with their classes."""
    keras.utils.set_random_seed(0)
    anchors = [(0.25, 0.25), (0.5, 0.4)]
    image = np.full((1, 64, 64, 3), 0.1, np.float32)
    image[0, 6:26, 3:22, 0] = 0.9
    image[0, 32:58, 35:61, 1] = 0.9
    y = _targets([[[0.05, 0.1, 0.35, 0.4, 0], [0.55, 0.5, 0.95, 0.9, 1]]], slots=3)
    common = {"input_shape": (64, 64, 3), "num_classes": 2, "anchors": anchors, "width_multiplier": 0.125}
    model = yolov2_tiny(**common)
    loss = YOLOv2Loss(anchors, num_classes=2)
    optimizer = keras.optimizers.Adam(3e-3)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss(y, model(image, training=True))
        optimizer.apply(tape.gradient(value, model.trainable_variables), model.trainable_variables)
        return value

    first = float(step())
    for _ in range(99):
        last = float(step())
    assert last < first / 20, (first, last)
    detector = yolov2_tiny(decode=True, score_threshold=0.3, **common)
    detector.set_weights(model.get_weights())
    found = {k: _np(v)[0] for k, v in detector(image, training=False).items()}
    count = int(found["num_detections"])
    for x0, y0, x1, y1, label in y[0, :2]:
        matches = [
            k for k in range(count)
            if found["classes"][k] == label and _iou(found["boxes"][k], [x0, y0, x1, y1]) > 0.5
        ]
        assert matches, (label, found["boxes"][:count], found["classes"][:count], found["scores"][:count])


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "builder,kwargs,match",
    [
        (yolov1, {"input_shape": (None, None, 3)}, "fully connected layers need a known size"),
        (yolov1, {"input_shape": (100, 100, 3)}, r"multiples of 64.*64 or 128"),
        (yolov1, {"grid_size": 0}, "grid_size=0"),
        (yolov1, {"config": "huge"}, "config='huge'"),
        (yolov1, {"batch_norm": 1}, "batch_norm=1"),
        (yolov1, {"dropout": 1.0}, "dropout=1.0"),
        (yolov1_fast, {"width_multiplier": 0}, "width_multiplier=0"),
        (yolov2, {"input_shape": (100, 96, 3)}, r"multiples of 32.*96 or 128"),
        (yolov2, {"anchors": []}, "anchors=\\[\\]"),
        (yolov2, {"anchors": [(0.1, 0.2, 0.3)]}, "anchors="),
        (yolov2, {"decode": "yes"}, "decode='yes'"),
        (yolov2, {"iou_threshold": 1.5}, "iou_threshold=1.5"),
        (yolov2, {"max_detections": 0}, "max_detections=0"),
        (yolov2_tiny, {"num_classes": 0}, "num_classes=0"),
        (yolov2, {"name": ""}, "name=''"),
        (darknet19, {"pooling": "sum"}, "pooling='sum'"),
    ],
)
def test_bad_arguments(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        builder(**kwargs)


def test_layer_errors_and_configs():
    with pytest.raises(ValueError, match="stride=0"):
        Reorg(0)
    with pytest.raises(ValueError, match="divisible by 2"):
        Reorg(2)(np.zeros((1, 5, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, rows, cols, 16\)"):
        YOLOv2Decode(ANCHORS, 3)(np.zeros((1, 2, 2, 15), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, rows, cols, 13\)"):
        YOLOv1Decode(2, 2, 3)(np.zeros((1, 2, 2, 12), np.float32))
    with pytest.raises(ValueError, match="anchors="):
        YOLOv2Decode("big", 3)
    for layer in (Reorg(4), YOLOv1Decode(3, 1, 5), YOLOv2Decode(ANCHORS, 3)):
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config
