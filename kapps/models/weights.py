"""Loading weights into a freshly built model from a local file or a reference model.

Nothing here downloads: ``weights=`` is ``None``, a path to a ``.weights.h5`` or ``.keras``
file, or a ``keras.Model`` (e.g. ``keras.applications.VGG16(weights=...)`` loaded by the user).

A builder calls ``load_into(model, weights, twin=..., copy=...)`` as its last step. Reference
models and ``.keras`` files are copied variable by variable (``copy_weights``, or a builder's own
name-matching copier); ``.weights.h5`` files are loaded directly and, where the architecture has
a keras.applications twin whose layer structure differs from kapps', read into that twin and
copied from it.
"""

import os
import warnings

import keras
import numpy as np

SUFFIXES = (".weights.h5", ".keras")


def _fits(target_shape, source_shape):
    """Whether a variable of ``source_shape`` fits one of ``target_shape``.

    A dense kernel ``(h * w * c, units)`` also fits a convolution kernel ``(h, w, c, units)``
    (and back): that is how a fully-connected top becomes convolutional (Long et al. 2015, FCN,
    Section 3.1), and channels-last flattening makes the reshape exact.
    """
    target_shape, source_shape = tuple(target_shape), tuple(source_shape)
    return target_shape == source_shape or (
        {len(target_shape), len(source_shape)} == {2, 4}
        and target_shape[-1] == source_shape[-1]
        and np.prod(target_shape) == np.prod(source_shape)
    )


def _layer(variable):
    """The layer (path) a variable belongs to: ``'pool2/conv'`` for ``'pool2/conv/kernel'``."""
    return variable.path.rsplit("/", 1)[0]


def _mismatch(model, argument, source, target, index, hint):
    """The error for the first variable (``index``) of ``source`` that does not fit ``target``."""
    where = f"{argument} does not fit model {model.name!r}"
    s = source[index] if index < len(source) else None
    t = target[index] if index < len(target) else None
    if s is None:
        message = (
            f"{where}: at variable {index} the reference has nothing (it ends here, after "
            f"{len(source)} variables), where the model's layer {_layer(t)!r} still needs "
            f"{t.path!r} {tuple(t.shape)} (of {len(target)}); {len(target) - len(source)} "
            "variables are missing."
        )
    else:
        ours = f"{t.path!r} {tuple(t.shape)}" if t is not None else "nothing (it ends here)"
        message = (
            f"{where}: the first layer that does not fit is {_layer(s)!r} of the reference: its "
            f"variable {index} of {len(source)}, {s.path!r} {tuple(s.shape)}, where the model "
            f"has {ours} (of {len(target)})."
        )
        if t is None:
            message += (
                f" The reference has {len(source) - len(target)} more variables, from layer "
                f"{_layer(s)!r} on, which the model has no place for (a top, or deeper blocks?)."
            )
    return f"{message} {hint}"


def copy_weights(model, reference, argument="weights", hint=None):
    """Copy every variable of ``reference`` into ``model``, in order, checking shapes first.

    Args:
        model: the model to fill.
        reference: a model of the same architecture (a kapps model, or the keras.applications
            twin, whose variables come in the same order).
        argument: how to name the source in errors, e.g. ``"weights='vgg16.keras'"``.
        hint: what to tell the user to do about a mismatch; default: build the same variant.

    Returns:
        ``model``.

    Raises:
        ValueError: naming ``argument``, the model and the first layer and variable of the
            reference that does not fit (its index, path and shape, and what the model has
            there, or "nothing (it ends here)"); nothing is assigned then.
    """
    hint = hint or (
        "Build the same variant with the same include_top and num_classes as the reference."
    )
    source, target = reference.weights, model.weights
    for index in range(max(len(source), len(target))):
        if (
            index >= len(source)
            or index >= len(target)
            or not _fits(target[index].shape, source[index].shape)
        ):
            raise ValueError(_mismatch(model, argument, source, target, index, hint))
    for t, s in zip(target, source):
        t.assign(np.reshape(keras.ops.convert_to_numpy(s), tuple(t.shape)))
    return model


def read_reference(weights):
    """Check ``weights`` and read the reference model behind it.

    Returns:
        ``(reference, argument)``: the ``keras.Model`` to copy from (``weights`` itself, or the
        ``.keras`` file read now), or None for ``weights=None`` and ``.weights.h5`` files; and
        how to name ``weights`` in errors (``"weights='path'"``).

    Raises:
        ValueError: for another type, a missing file, another suffix, or an unreadable
            ``.keras`` file.
    """
    if weights is None:
        return None, "weights=None"
    if isinstance(weights, keras.Model):
        return weights, f"weights=<keras.Model {weights.name!r}>"
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"weights={weights!r} is not allowed; expected None, a path to a .weights.h5 or "
            ".keras file, or a keras.Model."
        )
    path = os.fspath(weights)
    argument = f"weights={path!r}"
    if not os.path.isfile(path):
        raise ValueError(f"{argument}: no such file.")
    if not path.endswith(SUFFIXES):
        raise ValueError(
            f"{argument} is not allowed; expected a file ending in .weights.h5 or .keras."
        )
    if path.endswith(".keras"):
        try:
            return keras.saving.load_model(path, compile=False), argument
        except Exception as error:  # a corrupt archive, or layers this process does not know
            raise ValueError(f"{argument} could not be read as a .keras file: {error}") from None
    return None, argument


def _first_line(error, limit=300):
    """The first line of an error message, shortened: Keras' loading errors list every layer."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_into(model, weights, *, twin=None, copy=copy_weights):
    """Load ``weights`` (None, a file path or a ``keras.Model``) into ``model``; return it.

    Args:
        model: the freshly built model.
        weights: None; a ``keras.Model`` or ``.keras`` file, copied with ``copy``; or a
            ``.weights.h5`` file, loaded into ``model`` or, failing that, into ``twin()`` and
            copied from it with ``copy``.
        twin: None, or a function of no arguments that builds ``model``'s keras.applications
            twin with ``weights=None`` (same configuration), so that the ``.weights.h5`` files
            keras.applications saves can be read even where kapps' layer structure differs.
        copy: ``copy(model, reference, argument=...)`` fills ``model`` from a reference model
            and raises a ValueError naming ``argument`` when it does not fit (default
            ``copy_weights``: in order, by shape).

    Raises:
        ValueError: for a missing file, an unsupported type or suffix, or weights that do not
            fit (naming ``weights=``, the path and what was tried).
    """
    reference, argument = read_reference(weights)
    if reference is not None:
        copy(model, reference, argument=argument)
        return model
    if weights is None:
        return model
    path = os.fspath(weights)
    # Keras warns about parts of a file that do not match before it fails; those warnings are
    # noise when the twin then reads the file, so they are shown only if the load succeeds.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
            own_error = None
        except Exception as error:
            own_error = error
    if own_error is None:
        for warning in caught:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        return model
    tried = f"loading it into the model failed ({_first_line(own_error)})"
    if twin is None:
        raise ValueError(f"{argument} does not fit model {model.name!r}: {tried}.") from None
    try:
        reference = twin()
    except Exception as error:
        raise ValueError(
            f"{argument} does not fit model {model.name!r}: {tried}, and its keras.applications "
            f"twin could not be built ({_first_line(error)})."
        ) from None
    try:
        reference.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"{argument} does not fit model {model.name!r}: it is neither a weights file of "
            f"this model ({tried}) nor one of its keras.applications twin {reference.name!r} "
            f"(loading it there failed: {_first_line(error)}). Build the model with the "
            "configuration the file was saved from."
        ) from None
    copy(model, reference, argument=argument)
    return model
