"""The end every segmentation recipe shares: export the model (scores, and optionally the
uint8 mask computed inside the TFLite graph), score the Keras and TFLite models on the
evaluation images, draw the curves and the overlays, write ``metrics.json``.

Kept here, beside the recipes, so each recipe file stays the part that differs (flags, data,
model, loss, how a whole image is predicted).
"""

import os

import numpy as np

from kapps import export, plots


def confusion_matrix(masks, predictions, num_classes, ignore_class=None):
    """``(num_classes, num_classes)`` pixel counts, rows true class, columns predicted;
    pixels labelled ``ignore_class`` are left out."""
    masks = np.asarray(masks).reshape(-1).astype(np.int64)
    predictions = np.asarray(predictions).reshape(-1).astype(np.int64)
    keep = masks != ignore_class if ignore_class is not None else np.ones_like(masks, bool)
    keep &= (masks >= 0) & (masks < num_classes)
    return np.bincount(
        masks[keep] * num_classes + predictions[keep], minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)


def segmentation_scores(confusion, class_names):
    """Pixel accuracy, per-class IoU and mean IoU (over the classes present in truth or
    prediction) from a confusion matrix."""
    from kapps.metrics import per_class_iou

    confusion = np.asarray(confusion, dtype=np.float64)
    iou = np.asarray(per_class_iou(confusion), dtype=np.float64)  # NaN: class absent
    present = {name: float(iou[i]) for i, name in enumerate(class_names) if not np.isnan(iou[i])}
    return {
        "pixel_accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "mean_iou": float(np.mean(list(present.values()))) if present else 0.0,
        "iou": present,
    }


def evaluate_and_export(
    model,
    history,
    images,
    masks,
    out,
    *,
    predict,
    num_classes,
    class_names,
    calibration,
    sample_inputs,
    title,
    extra,
    ignore_class=None,
    export_mask=False,
    shown=4,
):
    """Export ``model`` to ``out`` and score every export on ``images``; return the metrics.

    Args:
        model: the trained segmentation model (per-pixel class probabilities).
        history: the ``History`` of ``kapps.training.fit`` (drawn as ``curves.png``).
        images, masks: the evaluation images and their class maps (NumPy).
        out: the recipe's output folder.
        predict: ``predict(score_fn, images) -> class maps``, how a whole image is predicted
            with a score function (the Keras model or a TFLite runner), e.g. tiled.
        num_classes: classes scored (labels ``0 .. num_classes - 1``).
        class_names: their names.
        calibration: model inputs for the int8 model.
        sample_inputs: model inputs for the TFLite parity checks.
        title: what the pictures call the run.
        extra: recipe-specific entries, first in ``metrics.json``.
        ignore_class: a label left out of every score (CamVid's void).
        export_mask: also write ``model_mask.tflite``, whose output is the ``uint8`` class map
            (argmax inside the graph), and check it against the Keras argmax.
        shown: examples drawn in ``samples.png``.

    Returns:
        The metrics dictionary (not yet written: the recipe adds the wall time and calls
        :func:`write_metrics`).
    """
    from kapps.models.segmentation.common import mask_model

    report = export.export_all(
        model, out, representative_data=np.asarray(calibration), sample_inputs=np.asarray(sample_inputs)
    )
    score_fns = {"keras": lambda x: np.asarray(model(x, training=False))}
    for key, path in (("tflite", "model.tflite"), ("tflite_int8", "model_int8.tflite")):
        score_fns[key] = export.load_tflite(os.path.join(out, path))
    predictions = {key: predict(fn, images) for key, fn in score_fns.items()}
    scores = {
        key: segmentation_scores(confusion_matrix(masks, p, num_classes, ignore_class), class_names)
        for key, p in predictions.items()
    }
    files = {k: {"path": os.path.relpath(v["path"], out), "bytes": v["bytes"]} for k, v in report.items()}
    if export_mask:
        path = os.path.join(out, "model_mask.tflite")
        flatbuffer = export.to_tflite(mask_model(model), path)
        on_device = np.asarray(export.load_tflite(flatbuffer)(np.asarray(sample_inputs)))
        in_keras = np.asarray(model(np.asarray(sample_inputs), training=False)).argmax(-1)
        files["tflite_mask"] = {"path": "model_mask.tflite", "bytes": len(flatbuffer)}
        extra = {**extra, "tflite_mask_agreement": float(np.mean(on_device == in_keras))}

    plots.plot_history(history, os.path.join(out, "curves.png"), title=title)
    plots.plot_segmentation(
        images[:shown], masks[:shown], predictions["keras"][:shown], os.path.join(out, "samples.png"),
        class_names=class_names, ignore_class=ignore_class,
        title=f"{title}: image, truth, prediction, mistakes",
    )
    return {
        **extra,
        "eval_images": int(len(images)),
        "scores": scores,
        "params": model.count_params(),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "files": files,
        "tflite_max_abs_diff": {k: report[k]["max_abs_diff"] for k in ("tflite", "tflite_int8") if k in report},
    }
