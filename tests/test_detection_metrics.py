"""Detection mAP in kapps.metrics: against pycocotools, on hand-computed curves, and the batched
DetectionEvaluator against evaluate_detections."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kapps.metrics import DetectionEvaluator, average_precision, evaluate_detections

WIDTH, HEIGHT = 640, 480


# ------------------------------------------------------------------- against pycocotools


def _scene(seed, num_images=8, num_classes=3, classes_detected=None, threshold=0.5):
    """Random images: non-overlapping ground truth, jittered and false detections.

    Ground-truth boxes sit in distinct cells of a 4x3 grid of the 640x480 image, so no two
    overlap. Detections: jittered copies of most boxes (some twice: duplicates; some with the
    wrong class), boxes at random places, and misses. Scores are distinct. Returns absolute
    xyxy boxes, and checks that no detection's IoU lies within 1e-6 of ``threshold``, so float
    rounding cannot tip a match either way.
    """
    rng = np.random.default_rng(seed)
    classes_detected = range(num_classes) if classes_detected is None else classes_detected
    cell_w, cell_h = WIDTH / 4, HEIGHT / 3
    detections, truths = [], []
    for _ in range(num_images):
        cells = rng.choice(12, size=rng.integers(3, 9), replace=False)
        gt_boxes, gt_classes = [], []
        for cell in cells:
            x0, y0 = (cell % 4) * cell_w, (cell // 4) * cell_h
            w, h = rng.uniform(20, cell_w - 5), rng.uniform(20, cell_h - 5)
            x, y = x0 + rng.uniform(0, cell_w - w), y0 + rng.uniform(0, cell_h - h)
            gt_boxes.append([x, y, x + w, y + h])
            gt_classes.append(int(rng.integers(num_classes)))
        det_boxes, det_classes = [], []
        for box, c in zip(gt_boxes, gt_classes):
            copies = rng.choice([0, 1, 2], p=[0.2, 0.6, 0.2])  # missed, found, found twice
            for _ in range(copies):
                w, h = box[2] - box[0], box[3] - box[1]
                jitter = rng.normal(0, 0.15, size=4) * [w, h, w, h]
                det_boxes.append(np.asarray(box) + jitter)
                det_classes.append(c if rng.uniform() < 0.85 else int(rng.integers(num_classes)))
        for _ in range(rng.integers(0, 4)):  # false positives anywhere
            x, y = rng.uniform(0, WIDTH - 60), rng.uniform(0, HEIGHT - 60)
            det_boxes.append([x, y, x + rng.uniform(10, 150), y + rng.uniform(10, 150)])
            det_classes.append(int(rng.integers(num_classes)))
        det_boxes = np.clip(np.asarray(det_boxes, float).reshape(-1, 4), 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1.0)  # positive sizes
        det_classes = np.asarray(det_classes, int)
        keep = np.isin(det_classes, list(classes_detected))
        detections.append({"boxes": det_boxes[keep], "classes": det_classes[keep]})
        truths.append({"boxes": np.asarray(gt_boxes), "classes": np.asarray(gt_classes)})
    scores = rng.permutation(sum(len(d["boxes"]) for d in detections)) + 1.0
    scores = scores / scores.max()  # distinct, in (0, 1]
    start = 0
    for d in detections:
        d["scores"] = scores[start : start + len(d["boxes"])]
        start += len(d["boxes"])
    for d, t in zip(detections, truths):
        ious = _iou(d["boxes"], t["boxes"])
        assert not np.any(np.abs(ious - threshold) < 1e-6)
    return detections, truths


def _iou(a, b):
    a, b = np.asarray(a, float)[:, None], np.asarray(b, float)[None]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def _coco_ap(detections, truths, num_classes, threshold=0.5):
    """Per-class AP from pycocotools at one IoU threshold, every area, unlimited detections;
    NaN where COCO reports -1 (a class without ground truth)."""
    xywh = lambda box: [box[0], box[1], box[2] - box[0], box[3] - box[1]]  # noqa: E731
    annotations = []
    for image, truth in enumerate(truths, start=1):
        for box, c in zip(truth["boxes"], truth["classes"]):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({
                # ids start at 1: COCOeval records a match as the ground truth's id, 0 = none.
                "id": len(annotations) + 1, "image_id": image, "category_id": int(c) + 1,
                "bbox": xywh(box), "area": w * h, "iscrowd": 0,
            })
    results = [
        {"image_id": image, "category_id": int(c) + 1, "bbox": xywh(box), "score": float(s)}
        for image, d in enumerate(detections, start=1)
        for box, c, s in zip(d["boxes"], d["classes"], d["scores"])
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco = COCO()
        coco.dataset = {
            "images": [{"id": i, "width": WIDTH, "height": HEIGHT} for i in range(1, len(truths) + 1)],
            "annotations": annotations,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
        }
        coco.createIndex()
        found = coco.loadRes(results)
        evaluator = COCOeval(coco, found, iouType="bbox")
        evaluator.params.useCats = 1
        evaluator.params.iouThrs = np.array([threshold])
        evaluator.params.maxDets = [10_000]
        evaluator.params.areaRng = [[0, 1e10]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, 0]  # (101 recall thresholds, classes)
    return np.array([np.nan if np.any(p < 0) else p.mean() for p in precision.T])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_matches_pycocotools(seed):
    """Per-class AP at ``interpolation="101point"`` equals pycocotools' COCOeval at IoU 0.5.

    The two differ by design in ways the data avoids or converts:

    - Matching: COCO gives a detection the best-IoU ground truth *not yet matched*; VOC gives it
      the best-IoU ground truth and calls it a false positive if that one is taken. Here no two
      ground-truth boxes overlap, so at most one of them can have IoU >= 0.5 with a detection
      (two disjoint boxes each covering half of the union with it is impossible but on a set of
      measure zero), and both rules give the same true/false positives.
    - Boxes: COCO takes absolute (x, y, width, height), ``area = w * h`` and ``iscrowd = 0``;
      ours takes xyxy, here relative (IoU is invariant to scaling x and y), no "+1" in either.
    - Scores are distinct (tie order differs), COCO's area ranges are one range over everything
      and its per-image cap ``maxDets`` is larger than any image's detections.
    - COCO's precision is ``tp / (tp + fp + eps)``; equal to ours within 1e-15.

    Random scenes over 8 images and 3 classes: jittered detections (some duplicates, some
    with the wrong class), random false positives and misses.
    """
    detections, truths = _scene(seed)
    expected = _coco_ap(detections, truths, 3)
    scale = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT])
    relative = [{**d, "boxes": d["boxes"] / scale} for d in detections]
    relative_truths = [{**t, "boxes": t["boxes"] / scale} for t in truths]
    result = evaluate_detections(relative, relative_truths, num_classes=3, interpolation="101point")
    ours = np.array([result["ap"][c] for c in range(3)])
    assert np.all((expected > 0.05) & (expected < 0.999)), expected  # informative curves
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    assert result["mAP"] == pytest.approx(np.mean(expected), abs=1e-6)
    # Every detection of a class is on its curve (no difficult boxes here).
    for c in range(3):
        assert len(result["precision"][c]) == result["num_detections"][c]


def test_ap_matches_pycocotools_with_missing_classes():
    """A class with ground truth but no detections has AP 0 in both; a class with detections
    but no ground truth is NaN here (-1 in COCO) and left out of the mean."""
    detections, truths = _scene(3, num_classes=4, classes_detected=(0, 1, 3))
    for t in truths:  # class 3: detections only
        keep = t["classes"] != 3
        t["boxes"], t["classes"] = t["boxes"][keep], t["classes"][keep]
    expected = _coco_ap(detections, truths, 4)
    result = evaluate_detections(detections, truths, num_classes=4, interpolation="101point")
    ours = np.array([result["ap"][c] for c in range(4)])
    assert result["num_detections"][2] == 0 and result["num_ground_truth"][2] > 0
    assert result["num_detections"][3] > 0 and result["num_ground_truth"][3] == 0
    assert expected[2] == 0.0 and np.isnan(expected[3])
    np.testing.assert_allclose(ours, expected, atol=1e-6)  # NaN == NaN here
    assert result["mAP"] == pytest.approx(np.mean(expected[:3]), abs=1e-6)
    assert np.all(np.isnan(result["recall"][3])) and np.all(result["precision"][3] == 0)


# -------------------------------------------------------------------- hand-computed curves

# Against 3 ground-truth boxes, detections in score order are TP, FP, TP, FP, FP.
RECALL = [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3]
PRECISION = [1, 1 / 2, 2 / 3, 1 / 2, 2 / 5]


def test_average_precision_all_point():
    """The envelope is 1 up to recall 1/3 and 2/3 up to recall 2/3, then 0:
    AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 0 = 5/9."""
    assert average_precision(RECALL, PRECISION, "all") == pytest.approx(5 / 9, abs=1e-12)


def test_average_precision_11_point():
    """r = 0, 0.1, 0.2, 0.3 (<= 1/3): max precision at recall >= r is 1; r = 0.4, 0.5, 0.6
    (<= 2/3): 2/3; r = 0.7 ... 1: 0. AP = (4 * 1 + 3 * 2/3) / 11 = 6/11."""
    assert average_precision(RECALL, PRECISION, "11point") == pytest.approx(6 / 11, abs=1e-12)


def test_average_precision_101_point():
    """r = 0.00 ... 0.33 (34 thresholds <= 1/3): 1; r = 0.34 ... 0.66 (33): 2/3; r = 0.67 ...
    1 (34): 0. AP = (34 + 33 * 2/3) / 101 = 56/101."""
    assert average_precision(RECALL, PRECISION, "101point") == pytest.approx(56 / 101, abs=1e-12)


def test_average_precision_11_point_exact_thresholds():
    """Recall exactly 0.3 reaches the threshold 0.3 (np.arange(0, 1.1, 0.1) would give
    0.30000000000000004 and miss it): thresholds 0, 0.1, 0.2, 0.3 get 1, so AP = 4/11."""
    assert average_precision([0.3], [1.0], "11point") == pytest.approx(4 / 11, abs=1e-12)


def _box(x, y, w=0.1, h=0.1):
    return [x, y, x + w, y + h]


def test_evaluate_detections_hand_computed():
    """Two images, 3 boxes of class 0; in score order TP, FP (random place), TP, FP (wrong
    image), FP: the curve of the examples above, so AP = 5/9, 6/11 and 56/101."""
    truths = [
        {"boxes": [_box(0.1, 0.1), _box(0.5, 0.5)], "classes": [0, 0]},
        {"boxes": [_box(0.2, 0.6)], "classes": [0]},
    ]
    detections = [
        {"boxes": [_box(0.1, 0.1), _box(0.8, 0.1), _box(0.2, 0.6)], "scores": [0.9, 0.8, 0.5], "classes": [0, 0, 0]},
        {"boxes": [_box(0.21, 0.61), _box(0.5, 0.1)], "scores": [0.7, 0.4], "classes": [0, 0]},
    ]
    for interpolation, ap in (("all", 5 / 9), ("11point", 6 / 11), ("101point", 56 / 101)):
        result = evaluate_detections(detections, truths, num_classes=1, interpolation=interpolation)
        assert result["ap"][0] == pytest.approx(ap, abs=1e-12)
        assert result["mAP"] == pytest.approx(ap, abs=1e-12)
    np.testing.assert_allclose(result["recall"][0], RECALL)
    np.testing.assert_allclose(result["precision"][0], PRECISION)
    assert result["num_ground_truth"] == {0: 3} and result["num_detections"] == {0: 5}


def test_duplicate_detection_is_false_positive():
    """Two boxes; box A detected twice (0.9, 0.8), box B once (0.7): TP, FP, TP, recall
    1/2, 1/2, 1, precision 1, 1/2, 2/3, AP = 1/2 * 1 + 1/2 * 2/3 = 5/6. (Without the
    duplicate it would be 1.)"""
    truths = [{"boxes": [_box(0.1, 0.1), _box(0.5, 0.5)], "classes": [0, 0]}]
    detections = [{"boxes": [_box(0.1, 0.1), _box(0.11, 0.1), _box(0.5, 0.5)], "scores": [0.9, 0.8, 0.7], "classes": [0, 0, 0]}]
    result = evaluate_detections(detections, truths, num_classes=1)
    np.testing.assert_allclose(result["precision"][0], [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(result["recall"][0], [1 / 2, 1 / 2, 1])
    assert result["ap"][0] == pytest.approx(5 / 6, abs=1e-12)


def test_difficult_ground_truth_is_ignored():
    """Boxes: A (difficult), B. Detections: on A (0.9), a false positive (0.8), on B (0.7).
    With A difficult: the first is ignored, leaving FP, TP over 1 box: recall 0, 1, precision
    0, 1/2, AP = 1/2. Without the flag: TP, FP, TP over 2 boxes, AP = 1/2 + 1/2 * 2/3 = 5/6.
    An undetected difficult box does not lower recall either."""
    boxes = [_box(0.1, 0.1), _box(0.5, 0.5)]
    detections = [{"boxes": [_box(0.1, 0.1), _box(0.8, 0.8), _box(0.5, 0.5)], "scores": [0.9, 0.8, 0.7], "classes": [0, 0, 0]}]
    hard = evaluate_detections(detections, [{"boxes": boxes, "classes": [0, 0], "difficult": [True, False]}], num_classes=1)
    assert hard["ap"][0] == pytest.approx(0.5, abs=1e-12)
    assert hard["num_ground_truth"][0] == 1 and hard["num_detections"][0] == 3
    np.testing.assert_allclose(hard["recall"][0], [0, 1])
    np.testing.assert_allclose(hard["precision"][0], [0, 1 / 2])
    easy = evaluate_detections(detections, [{"boxes": boxes, "classes": [0, 0]}], num_classes=1)
    assert easy["ap"][0] == pytest.approx(5 / 6, abs=1e-12)
    # Only B detected, A difficult and missed: perfect.
    only_b = [{"boxes": [_box(0.5, 0.5)], "scores": [0.7], "classes": [0]}]
    missed = evaluate_detections(only_b, [{"boxes": boxes, "classes": [0, 0], "difficult": [True, False]}], num_classes=1)
    assert missed["ap"][0] == 1.0


def test_iou_threshold_edge():
    """Detection (0, 0, 1, 1) against box (0, 0, 0.5, 1): IoU = 0.5 / 1 exactly. It matches at
    iou_threshold=0.5 (IoU >= threshold) and not at 0.5 + 1e-9."""
    truths = [{"boxes": [[0.0, 0.0, 0.5, 1.0]], "classes": [0]}]
    detections = [{"boxes": [[0.0, 0.0, 1.0, 1.0]], "scores": [0.9], "classes": [0]}]
    assert evaluate_detections(detections, truths, num_classes=1, iou_threshold=0.5)["ap"][0] == 1.0
    assert evaluate_detections(detections, truths, num_classes=1, iou_threshold=0.5 + 1e-9)["ap"][0] == 0.0
    # Absolute pixel boxes: the same IoU (no +1 pixel convention).
    pixels = [{"boxes": [[0.0, 0.0, 50.0, 100.0]], "classes": [0]}]
    detections_px = [{"boxes": [[0.0, 0.0, 100.0, 100.0]], "scores": [0.9], "classes": [0]}]
    assert evaluate_detections(detections_px, pixels, num_classes=1)["ap"][0] == 1.0


@pytest.mark.parametrize("interpolation", ["all", "11point", "101point"])
def test_perfect_and_empty_detections(interpolation):
    """Every box found, in any score order, with no false positives: AP 1. No detections:
    AP 0 with empty curves. A class without ground truth: NaN, not in the mean."""
    truths = [
        {"boxes": [_box(0.1, 0.1), _box(0.5, 0.5)], "classes": [0, 1]},
        {"boxes": [_box(0.3, 0.3)], "classes": [0]},
    ]
    perfect = [
        {"boxes": [_box(0.5, 0.5), _box(0.1, 0.1)], "scores": [0.3, 0.6], "classes": [1, 0]},
        {"boxes": [_box(0.3, 0.3)], "scores": [0.8], "classes": [0]},
    ]
    result = evaluate_detections(perfect, truths, num_classes=3, class_names=["a", "b", "c"], interpolation=interpolation)
    assert result["ap"]["a"] == 1.0 and result["ap"]["b"] == 1.0 and np.isnan(result["ap"]["c"])
    assert result["mAP"] == 1.0
    nothing = [{"boxes": np.zeros((0, 4)), "scores": [], "classes": []}] * 2
    empty = evaluate_detections(nothing, truths, num_classes=3, interpolation=interpolation)
    assert empty["ap"][0] == 0.0 and empty["ap"][1] == 0.0 and empty["mAP"] == 0.0
    assert empty["precision"][0].shape == (0,) and empty["recall"][0].shape == (0,)
    assert average_precision([], [], interpolation) == 0.0


def test_no_ground_truth_at_all_gives_nan_map():
    detections = [{"boxes": [_box(0.1, 0.1)], "scores": [0.5], "classes": [0]}]
    result = evaluate_detections(detections, [{"boxes": np.zeros((0, 4)), "classes": []}], num_classes=2)
    assert np.isnan(result["mAP"]) and result["num_detections"][0] == 1


# ------------------------------------------------------------------------ DetectionEvaluator


def _pad(detections, truths, capacity=12, max_boxes=10):
    """Batched padded forms: the decode=True output dict and y_true [B, M, 5] (-1 padding)."""
    batch = len(detections)
    out = {
        "boxes": np.zeros((batch, capacity, 4), np.float32),
        "scores": np.zeros((batch, capacity), np.float32),
        "classes": np.zeros((batch, capacity), np.int32),
        "num_detections": np.zeros(batch, np.int32),
    }
    y_true = -np.ones((batch, max_boxes, 5), np.float32)
    for b, (d, t) in enumerate(zip(detections, truths)):
        n, m = len(d["boxes"]), len(t["boxes"])
        out["boxes"][b, :n], out["scores"][b, :n], out["classes"][b, :n] = d["boxes"], d["scores"], d["classes"]
        out["num_detections"][b] = n
        y_true[b, :m, :4], y_true[b, :m, 4] = t["boxes"], t["classes"]
    return out, y_true


def _assert_same(a, b):
    assert a.keys() == b.keys()
    np.testing.assert_equal(a["mAP"], b["mAP"])
    for key in ("ap", "num_ground_truth", "num_detections"):
        assert a[key].keys() == b[key].keys()
        np.testing.assert_equal(list(a[key].values()), list(b[key].values()))
    for key in ("precision", "recall"):
        for name in a[key]:
            np.testing.assert_array_equal(a[key][name], b[key][name])


def test_evaluator_on_padded_batches_equals_evaluate_detections():
    """Two padded batches (with difficult flags given per real box in one, per padded row in
    the other) give exactly the result of evaluate_detections on the unpadded lists."""
    detections, truths = _scene(4, num_images=6)
    scale = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT])
    rng = np.random.default_rng(0)
    for d, t in zip(detections, truths):
        # float32 like the model's outputs, so both paths see identical numbers.
        d["boxes"] = (d["boxes"] / scale).astype(np.float32)
        d["scores"] = d["scores"].astype(np.float32)
        t["boxes"] = (t["boxes"] / scale).astype(np.float32)
        t["difficult"] = rng.uniform(size=len(t["boxes"])) < 0.2
    names = ["RBC", "WBC", "Platelets"]
    expected = evaluate_detections(detections, truths, num_classes=3, class_names=names, interpolation="11point")
    assert any(t["difficult"].any() for t in truths)

    evaluator = DetectionEvaluator(3, class_names=names, interpolation="11point")
    first, y_first = _pad(detections[:4], truths[:4])
    evaluator.update(first, y_first, difficult=[t["difficult"] for t in truths[:4]])
    second, y_second = _pad(detections[4:], truths[4:])
    padded_flags = np.zeros(y_second.shape[:2], bool)
    for b, t in enumerate(truths[4:]):
        padded_flags[b, : len(t["difficult"])] = t["difficult"]
    evaluator.update(second, y_second, difficult=padded_flags)
    assert evaluator.num_images == 6
    _assert_same(evaluator.result(), expected)

    evaluator.reset()
    assert evaluator.num_images == 0
    evaluator.update(detections, truths)  # per-image dicts work too
    _assert_same(evaluator.result(), expected)


# ---------------------------------------------------------------------------- bad arguments


def test_bad_arguments_raise():
    one = [{"boxes": [_box(0.1, 0.1)], "scores": [0.5], "classes": [0]}]
    truth = [{"boxes": [_box(0.1, 0.1)], "classes": [0]}]
    with pytest.raises(ValueError, match="one entry per image"):
        evaluate_detections(one, truth * 2, num_classes=1)
    with pytest.raises(ValueError, match="interpolation='voc'"):
        evaluate_detections(one, truth, num_classes=1, interpolation="voc")
    with pytest.raises(ValueError, match="num_classes=0"):
        evaluate_detections(one, truth, num_classes=0)
    with pytest.raises(ValueError, match="class_names"):
        evaluate_detections(one, truth, num_classes=2, class_names=["a"])
    with pytest.raises(ValueError, match="iou_threshold=1.5"):
        evaluate_detections(one, truth, num_classes=1, iou_threshold=1.5)
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        evaluate_detections([{**one[0], "classes": [1]}], truth, num_classes=1)
    with pytest.raises(ValueError, match=r"shape \[n, 4\]"):
        evaluate_detections([{**one[0], "boxes": [[0.1, 0.2, 0.3]]}], truth, num_classes=1)
    with pytest.raises(ValueError, match=r"scores'\] must have shape \[1\]"):
        evaluate_detections([{**one[0], "scores": [0.5, 0.4]}], truth, num_classes=1)
    with pytest.raises(ValueError, match="difficult'\\] must have shape"):
        evaluate_detections(one, [{**truth[0], "difficult": [True, False]}], num_classes=1)
    with pytest.raises(ValueError, match="keys"):
        evaluate_detections([{"boxes": [_box(0.1, 0.1)]}], truth, num_classes=1)
    with pytest.raises(ValueError, match="list with one dict per image"):
        evaluate_detections(one[0], truth[0], num_classes=1)
    with pytest.raises(ValueError, match="same length"):
        average_precision([0.5, 1.0], [1.0], "all")
    with pytest.raises(ValueError, match="must not decrease"):
        average_precision([0.5, 0.25], [1.0, 1.0], "all")

    evaluator = DetectionEvaluator(2)
    batch, y_true = _pad(one, truth)
    with pytest.raises(ValueError, match="same batch"):
        evaluator.update(batch, np.concatenate([y_true, y_true]))
    with pytest.raises(ValueError, match="num_detections"):
        evaluator.update({**batch, "num_detections": np.array([13])}, y_true)
    with pytest.raises(ValueError, match=r"\[B, M, 5\]"):
        evaluator.update(batch, y_true[..., :4])
    with pytest.raises(ValueError, match=r"difficult\[0\] has 3 flags"):
        evaluator.update(batch, y_true, difficult=[[False, False, False]])
    assert evaluator.num_images == 0  # nothing half-added
