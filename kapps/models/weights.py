"""Loading weights into a freshly built model from a local file or a reference model.

Nothing here downloads: ``weights=`` is ``None``, a path to a ``.weights.h5`` or ``.keras``
file, or a ``keras.Model`` (e.g. ``keras.applications.VGG16(weights=...)`` loaded by the user).
"""

import os

import keras
import numpy as np


def _fit_value(target, value):
    """``value`` shaped for ``target``, or None if it does not fit.

    A dense kernel ``(h * w * c, units)`` also fits a convolution kernel ``(h, w, c, units)``:
    that is how a fully-connected top becomes convolutional (Long et al. 2015, FCN, Section
    3.1), and channels-last flattening makes the reshape exact.
    """
    shape = tuple(target.shape)
    if tuple(value.shape) == shape:
        return value
    if len(shape) == 4 and value.ndim == 2 and value.shape[1] == shape[3] and value.size == np.prod(shape):
        return value.reshape(shape)
    if len(shape) == 2 and value.ndim == 4 and value.shape[3] == shape[1] and value.size == np.prod(shape):
        return value.reshape(shape)
    return None


def copy_weights(model, reference, argument="weights"):
    """Copy every variable of ``reference`` into ``model``, in order, checking shapes.

    Args:
        model: the model to fill.
        reference: a model of the same architecture.
        argument: how to name the source in errors, e.g. ``"weights='vgg16.keras'"``.

    Raises:
        ValueError: naming ``argument`` when the number of variables or a shape differs.
    """
    source = reference.weights
    target = model.weights
    if len(source) != len(target):
        raise ValueError(
            f"{argument} does not fit: it has {len(source)} variables but model "
            f"{model.name!r} has {len(target)}; they are not the same architecture."
        )
    values = []
    for t, s in zip(target, source):
        value = _fit_value(t, np.asarray(keras.ops.convert_to_numpy(s)))
        if value is None:
            raise ValueError(
                f"{argument} does not fit: variable {s.path!r} has shape {tuple(s.shape)} but "
                f"{t.path!r} of model {model.name!r} needs {tuple(t.shape)}."
            )
        values.append(value)
    for t, v in zip(target, values):
        t.assign(v)


def load_into(model, weights):
    """Load ``weights`` (None, a file path or a ``keras.Model``) into ``model``; return it.

    Raises:
        ValueError: for a missing file, an unsupported suffix, or weights that do not fit.
    """
    if weights is None:
        return model
    if isinstance(weights, keras.Model):
        copy_weights(model, weights, f"weights=<keras.Model {weights.name!r}>")
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"weights={weights!r} is not allowed; expected None, a path to a .weights.h5 or "
            ".keras file, or a keras.Model."
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"weights={path!r}: no such file.")
    if path.endswith(".keras"):
        try:
            reference = keras.saving.load_model(path, compile=False)
        except Exception as error:  # a corrupt archive
            raise ValueError(f"weights={path!r} could not be read as a .keras file: {error}") from None
        copy_weights(model, reference, f"weights={path!r}")
        return model
    if path.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except Exception as error:
            raise ValueError(f"weights={path!r} does not fit model {model.name!r}: {error}") from None
        return model
    raise ValueError(
        f"weights={path!r} is not allowed; expected a file ending in .weights.h5 or .keras."
    )
