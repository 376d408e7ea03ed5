"""Counting floating-point operations of a model by tracing it.

The count follows the convention of the papers: ``2 x`` the multiply-accumulates of
convolutions and matrix products (Conv2D/3D, depthwise and transposed convolutions, MatMul,
batched MatMul, Einsum), for one example. Element-wise work (activations, normalization,
pooling, bias additions) is not counted. Work is counted as executed: a convolution whose
kernel has structural zeros (LeNet-5's partial C3) counts as the full convolution it runs as.
Nested function calls (Keras runs grouped convolutions as one) are walked into; the bodies
of ``tf.while_loop`` (recurrent layers) are not.
"""

import math


def _static(shape):
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    if any(d is None for d in dims):
        raise ValueError(f"cannot count FLOPs with an unknown dimension in shape {dims}.")
    return dims


def _einsum_flops(op):
    equation = op.get_attr("equation").decode()
    inputs, _ = equation.replace(" ", "").split("->")
    sizes = {}
    for term, tensor in zip(inputs.split(","), op.inputs):
        dims = _static(tensor.shape)
        if "..." in term:
            raise ValueError(f"cannot count FLOPs of einsum with an ellipsis: {equation!r}.")
        sizes.update(zip(term, dims))
    return 2 * math.prod(sizes.values())


def _op_flops(op):
    kind = op.type
    if kind in ("Conv2D", "Conv3D", "DepthwiseConv2dNative"):
        out = _static(op.outputs[0].shape)
        kernel = _static(op.inputs[1].shape)
        spatial = kernel[:-2]
        if kind == "DepthwiseConv2dNative":
            # kernel (kh, kw, in, multiplier): each output channel sees one input channel.
            return 2 * math.prod(out) * math.prod(spatial)
        # kernel (..., in_per_group, out): each output sees in_per_group * window inputs.
        return 2 * math.prod(out) * math.prod(spatial) * kernel[-2]
    if kind in ("Conv2DBackpropInput", "Conv3DBackpropInputV2"):
        grad = _static(op.inputs[2].shape)  # the small input of the transposed convolution
        kernel = _static(op.inputs[1].shape)  # (..., out_channels, in_channels)
        return 2 * math.prod(grad) * math.prod(kernel[:-2]) * kernel[-2]
    if kind == "MatMul":
        a = _static(op.inputs[0].shape)
        out = _static(op.outputs[0].shape)
        k = a[0] if op.get_attr("transpose_a") else a[1]
        return 2 * math.prod(out) * k
    if kind in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = _static(op.inputs[0].shape)
        out = _static(op.outputs[0].shape)
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return 2 * math.prod(out) * k
    if kind == "Einsum":
        return _einsum_flops(op)
    return 0


def count_flops(model, input_shape=None):
    """FLOPs of one forward pass of ``model`` on one example (inference mode).

    Args:
        model: a Keras model (TensorFlow backend); with several inputs (a translation
            model's source and target tokens) each gets an example of ``input_shape``, except
            a further input whose shape is fully known (DDPM's time step), which keeps it.
        input_shape: shape of one example, without the batch axis; defaults to the model's
            (first) input shape, which must then be fully known.

    Returns:
        An int: ``2 x`` the multiply-accumulates of convolutions and matrix products.

    Raises:
        ValueError: when the input shape has unknown dimensions and none is given.

    Example:
        >>> count_flops(kapps.build("lenet5"))
    """
    import tensorflow as tf

    shape = tuple(input_shape) if input_shape is not None else tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"input_shape={shape!r} has unknown dimensions; pass input_shape=(height, width, "
            "channels) (or (tokens,) for a sequence model) to count FLOPs."
        )
    inputs = list(model.inputs) if model.inputs else [None]

    def example_shape(tensor, index):
        # the first input takes input_shape; a further input of fully known shape (DDPM's
        # scalar time step) keeps its own, others (target tokens) take input_shape too
        own = tuple(tensor.shape[1:]) if tensor is not None else None
        if index > 0 and own is not None and None not in own:
            return own
        return shape

    specs = [
        tf.TensorSpec((1, *example_shape(t, i)), dtype=t.dtype if t is not None else "float32")
        for i, t in enumerate(inputs)
    ]
    if len(specs) == 1:
        function = tf.function(lambda x: model(x, training=False))
    else:  # several inputs (source and target tokens): the same example shape for each
        function = tf.function(lambda *xs: model(list(xs), training=False))
    graph = function.get_concrete_function(*specs).graph
    return int(_graph_flops(graph))


def _graph_flops(graph):
    total = 0
    for op in graph.get_operations():
        total += _op_flops(op)
        if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            # Keras runs some layers (grouped convolutions) as nested functions.
            function = graph._get_function(op.get_attr("f").name)
            if function is not None and hasattr(function, "graph"):
                total += _graph_flops(function.graph)
    return total
