"""Peak training memory of U-Net and FCN-8s at the same input size, batch and class count.

The U-Net paper's readers are often told that U-Net "needs a lot of memory". This measures
it against FCN-8s, the other classic segmentation network, under the same conditions: each
model is trained for a few steps (Adam, sparse cross-entropy, float32, random data) in a fresh
Python process, and the process's peak resident memory (``ru_maxrss``) above what it held
just before the model was built is reported, with three figures computed from the model:

- ``weights_mib``: the parameters (float32);
- ``optimizer_mib``: gradients plus Adam's two moment slots (3 x the trainable weights);
- ``activations_mib``: every floating-point tensor one forward pass produces (the batch
  included), the upper bound of what backpropagation keeps alive.

The figures are CPU memory (TensorFlow's CPU allocator keeps no statistics, so the process
peak is what there is). On a GPU, ``tf.config.experimental.get_memory_info("GPU:0")["peak"]``
measures the same quantity more precisely; ``--device-peak`` reports it when a GPU is present.

    python benchmarks/segmentation_memory.py                      # 256x256x3, batch 4, 12 classes
    python benchmarks/segmentation_memory.py --size 512 --batch 2
"""

import argparse
import json
import os
import subprocess
import sys

#: Registry names compared, with the overrides that give both the same input and classes.
MODELS = ("unet", "fcn8s")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--size", type=int, default=256, help="input height and width (default 256)")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="training steps after the first (default 3)")
    parser.add_argument("--tiny", action="store_true", help="small widths (for tests): the path, not the figures")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "segmentation_memory.json"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for flag in ("size", "channels", "classes", "batch", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag}={getattr(args, flag)} is not allowed; expected a positive integer")
    if args.size % 32:
        parser.error(f"--size={args.size} is not allowed; expected a multiple of 32 (FCN's and U-Net's poolings)")
    return args


def overrides(name, args):
    """The builder overrides for ``name``: the shared input and classes, U-Net with 'same'
    padding (so both return full-size maps) and BatchNorm as it is usually trained."""
    shape = (args.size, args.size, args.channels)
    if name == "unet":
        config = {"input_shape": shape, "num_classes": args.classes, "padding": "same", "batch_norm": True}
        if args.tiny:
            config.update(filters=4, depth=2)
        return config
    config = {"input_shape": shape, "num_classes": args.classes}
    if args.tiny:
        config.update(filters=(4, 8, 8, 16, 16), fc_units=16)
    return config


def _rss_mib():
    """Current resident memory of this process, MiB (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def activation_bytes(model, batch):
    """Bytes of every floating-point tensor of one training-mode forward pass at ``batch``."""
    import tensorflow as tf

    spec = tf.TensorSpec((batch, *model.inputs[0].shape[1:]), model.inputs[0].dtype)
    graph = tf.function(lambda x: model(x, training=True)).get_concrete_function(spec).graph
    skip = {"Const", "VarHandleOp", "ReadVariableOp", "Placeholder", "Identity", "Shape"}

    def walk(graph):
        total = 0
        for op in graph.get_operations():
            if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
                function = graph._get_function(op.get_attr("f").name)
                if function is not None and hasattr(function, "graph"):
                    total += walk(function.graph)
                continue
            if op.type in skip:
                continue
            for t in op.outputs:
                if t.dtype.is_floating and t.shape.is_fully_defined():
                    total += t.shape.num_elements() * t.dtype.size
        return total

    return walk(graph)


def measure(name, args):
    """Run in a fresh process: build, train ``1 + steps`` steps, report the memory figures."""
    import keras
    import numpy as np
    import tensorflow as tf

    import kapps

    tf.constant(1.0) + 1.0  # start the runtime before the baseline
    base = _rss_mib()
    model = kapps.build(name, **overrides(name, args))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.SparseCategoricalCrossentropy())
    rng = np.random.default_rng(0)
    images = rng.random((args.batch, args.size, args.size, args.channels), dtype="float32")
    out_size = model.outputs[0].shape[1:3]
    masks = rng.integers(0, args.classes, (args.batch, *out_size)).astype("int32")
    for _ in range(1 + args.steps):
        model.train_on_batch(images, masks)
    peak = _peak_mib() - base
    weights = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    trainable = sum(int(np.prod(w.shape)) * 4 for w in model.trainable_weights)
    result = {
        "model": name,
        "params": model.count_params(),
        "peak_training_mib": round(peak, 1),
        "weights_mib": round(weights / 2**20, 1),
        "optimizer_mib": round(3 * trainable / 2**20, 1),
        "activations_mib": round(activation_bytes(model, args.batch) / 2**20, 1),
    }
    if tf.config.list_physical_devices("GPU"):
        result["gpu_peak_mib"] = round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)
    return result


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return None
    forwarded = [
        f"--size={args.size}", f"--channels={args.channels}", f"--classes={args.classes}",
        f"--batch={args.batch}", f"--steps={args.steps}", *(["--tiny"] if args.tiny else []),
    ]
    rows = []
    for name in args.models:
        # One process per model: ru_maxrss never goes down, so models must not share one.
        run = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", name, *forwarded],
            capture_output=True, text=True, check=False,
        )
        if run.returncode:
            raise RuntimeError(f"measuring {name} failed:\n{run.stderr[-3000:]}")
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    results = {
        "input": [args.size, args.size, args.channels], "batch": args.batch, "classes": args.classes,
        "dtype": "float32", "steps": 1 + args.steps, "tiny": args.tiny, "models": rows,
    }
    print(f"{'model':8} {'params':>12} {'peak MiB':>9} {'weights':>8} {'grads+Adam':>10} {'activations':>11}")
    for r in rows:
        print(f"{r['model']:8} {r['params']:>12,} {r['peak_training_mib']:>9.0f} {r['weights_mib']:>8.0f} "
              f"{r['optimizer_mib']:>10.0f} {r['activations_mib']:>11.0f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
