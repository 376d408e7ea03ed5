"""What every segmentation builder's model can be wrapped in."""

import keras

from kapps.layers.masks import ArgmaxMask


def mask_model(model, threshold=0.5, name=None):
    """``model`` with its per-pixel scores turned into a ``uint8`` class map in the graph.

    The wrapped model shares ``model``'s layers and weights (nothing is copied), so exporting
    it to TFLite (``kapps.export.to_tflite``) gives a file whose output is the mask itself:
    one byte per pixel, computed on the device, instead of a float per class.

    Args:
        model: a ``keras.Model`` with one output of shape ``(batch, height, width, classes)``.
        threshold: for a one-class (sigmoid) output, the score above which a pixel is 1
            (use 0.0 for logits); ignored for several classes (argmax).
        name: the wrapped model's name (default ``<model.name>_mask``).

    Returns:
        A ``keras.Model`` from ``model``'s inputs to ``(batch, height, width)`` ``uint8``.

    Raises:
        ValueError: ``model`` has several outputs or its output is not 4-D.

    Example:
        >>> masks = mask_model(kapps.build("unet", num_classes=2))
        >>> kapps.export.to_tflite(masks, "mask.tflite")
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model={model!r} is not allowed; expected a keras.Model.")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 4:
        shapes = [tuple(o.shape) for o in model.outputs]
        raise ValueError(
            f"model {model.name!r} has outputs of shapes {shapes}; expected one output "
            "(batch, height, width, classes)."
        )
    mask = ArgmaxMask(threshold, name="mask")(model.outputs[0])
    return keras.Model(model.inputs, mask, name=name or f"{model.name}_mask")
