"""The end every image-classification recipe shares: score the test split with the Keras model
and its TFLite exports, draw the curves and the predictions, write ``metrics.json``.

Kept here, beside the recipes, so each recipe file stays the thin part that differs (flags,
data, model, optimiser).
"""

import json
import os

import keras
import numpy as np

from kapps import export, plots


def evaluate_and_export(
    model, history, test_ds, calibration, out, *, class_names, title, extra, curves_note="validation: the test split"
):
    """Export ``model`` to ``out`` and score every export on ``test_ds``; return the metrics.

    Args:
        model: the trained classifier (outputs class probabilities).
        history: the ``History`` from ``kapps.training.fit`` (drawn as ``curves.png``).
        test_ds: batched ``(images, labels)``; every example is scored.
        calibration: a batch of training images for the int8 model.
        out: the recipe's output folder.
        class_names: names for the labels, in label order.
        title: what the pictures call the run, e.g. ``"resnet20 on CIFAR-10"``.
        extra: recipe-specific entries merged into ``metrics.json`` first.
        curves_note: what the validation curves show, added to the title of ``curves.png``
            (``None`` adds nothing).

    Returns:
        The metrics dictionary also written to ``out/metrics.json``: accuracies and error
        rates of the Keras, float32 TFLite and int8 TFLite models, per-class accuracy,
        parameters, files and the TFLite/Keras differences.
    """
    # Direct calls rather than model.evaluate/predict: under multi-worker training those are
    # collective, and only the chief gets here.
    test_images, test_labels = (np.concatenate(a) for a in zip(*test_ds.as_numpy_iterator()))
    keras_scores = np.concatenate(
        [keras.ops.convert_to_numpy(model(images, training=False)) for images, _ in test_ds]
    )
    report = export.export_all(
        model, out, representative_data=np.asarray(calibration), sample_inputs=test_images[:64]
    )
    predictions = {"keras": keras_scores.argmax(-1)}
    for key, path in (("tflite", "model.tflite"), ("tflite_int8", "model_int8.tflite")):
        predictions[key] = export.load_tflite(os.path.join(out, path))(test_images).argmax(-1)
    accuracy = {k: float(np.mean(p == test_labels)) for k, p in predictions.items()}
    per_class = {
        name: float(np.mean(predictions["keras"][test_labels == i] == i))
        for i, name in enumerate(class_names)
        if np.any(test_labels == i)
    }

    plots.plot_history(history, os.path.join(out, "curves.png"), title=f"{title} ({curves_note})" if curves_note else title)
    # The first 24 test images, then up to 12 of the model's mistakes.
    wrong = np.flatnonzero(predictions["keras"] != test_labels)
    shown = np.concatenate([np.arange(min(24, len(test_labels))), wrong[wrong >= 24][:12]])
    plots.plot_image_predictions(
        test_images[shown], test_labels[shown], predictions["keras"][shown],
        os.path.join(out, "samples.png"), class_names=class_names,
        title=f"{title} test images: the first 24, then mistakes ({len(wrong)} in all)",
    )
    metrics = {
        **extra,
        "test_examples": int(len(test_labels)),
        "test_accuracy": accuracy,
        "test_error_percent": {k: round(100 * (1 - v), 3) for k, v in accuracy.items()},
        "test_accuracy_per_class": per_class,
        "params": model.count_params(),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "files": {k: {"path": os.path.relpath(v["path"], out), "bytes": v["bytes"]} for k, v in report.items()},
        "tflite_max_abs_diff": {k: report[k]["max_abs_diff"] for k in ("tflite", "tflite_int8") if k in report},
    }
    return metrics


def write_metrics(metrics, out):
    """Write ``metrics`` to ``out/metrics.json`` and print the one-line summary."""
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    errors = metrics["test_error_percent"]
    print(
        f"{metrics.get('model', metrics['recipe'])} test error: Keras {errors['keras']:.2f}%, "
        f"TFLite {errors['tflite']:.2f}%, TFLite int8 {errors['tflite_int8']:.2f}% on "
        f"{metrics['test_examples']} images; {metrics['wall_seconds']:.0f} s; wrote {out}"
    )
