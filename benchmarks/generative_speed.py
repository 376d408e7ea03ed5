"""Generation speed of the four MNIST generators: samples per second in Keras and in TFLite at
batch 1 and batch 64.

For each of DCGAN, VAE, RealNVP and DDPM (with ``--ddim-steps`` DDIM steps unrolled in one
graph), the generator is ``model.sampler(...)``: noise (and a class, for a conditional DCGAN)
in, 28x28 digits out, exactly what the recipes export. Keras runs it as a ``tf.function``
(``training=False``); TFLite runs ``kapps.export.to_tflite(sampler)`` (builtin ops only, float32)
in the LiteRT interpreter with as many threads as the machine has CPUs. The two sides run in
alternating rounds (``kapps.benchmarking.alternate_rounds``), so a noisy shared machine slows
both alike; the ratio TFLite / Keras is the figure to read. There is no keras.applications or
keras-hub generator for these models to compare with.

Models: with ``--models-dir`` (default ``saved_models``), the recipes' trained ``model.keras``
files where they exist, otherwise the recipes' MNIST configurations with random weights (the
speed does not depend on the weights), and the recipe's own ``model.tflite`` where it was
exported with the same options; ``--tiny`` builds the registry's tiny configurations, for
tests.

    python benchmarks/generative_speed.py                   # about 5 minutes on 2 CPUs
    python benchmarks/generative_speed.py --tiny            # seconds

Prints a markdown table and writes the figures as JSON (``--out``).
"""

import argparse
import json
import os
import sys

RECIPES = {"dcgan": "dcgan_mnist", "vae": "vae_mnist", "realnvp": "realnvp_mnist", "ddpm": "ddpm_mnist"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(RECIPES), help=f"comma-separated, from {', '.join(RECIPES)}")
    parser.add_argument("--models-dir", default="saved_models", help="where the recipes wrote their outputs")
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--ddim-steps", type=int, default=10, help="DDIM steps of the DDPM generator (default 10, as the recipe exports)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="calls per timed round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="the registry's tiny configurations and few rounds, for tests")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "generative_speed.json"))
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in RECIPES]
    if unknown or not models:
        parser.error(f"--models={args.models} is not allowed; expected some of {', '.join(RECIPES)}")
    args.models = models
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        args.batch_sizes = []
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error(f"--batch-sizes={args.batch_sizes} is not allowed; expected comma-separated positive integers")
    if args.tiny:
        args.repeats, args.steps, args.warmup, args.ddim_steps = 2, 1, 1, 2
    for flag in ("ddim_steps", "repeats", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)} is not allowed; expected a positive integer")
    if args.warmup < 0:
        parser.error(f"--warmup={args.warmup} is not allowed; expected at least 0")
    return args


def load_model(name, args):
    """``(model, source)``: the recipe's trained model, else its MNIST configuration."""
    import importlib

    import keras

    import kapps
    import kapps.models  # registers the generative classes that load_model looks up
    from kapps import registry

    if args.tiny:
        return kapps.build(name, **registry.tiny_overrides(name)), "tiny configuration, random weights"
    path = os.path.join(args.models_dir, RECIPES[name], "model.keras")
    if os.path.isfile(path):
        return keras.saving.load_model(path, compile=False), f"trained ({RECIPES[name]}/model.keras)"
    config = importlib.import_module(f"recipes.{RECIPES[name]}").MODEL
    return kapps.build(name, **config), "MNIST configuration, random weights"


def recipe_tflite(name, args, source, options):
    """The recipe's own ``model.tflite`` (the file a phone gets) when the trained model was
    loaded and the recipe exported the same sampler options; else None (convert here)."""
    folder = os.path.join(args.models_dir, RECIPES[name])
    if not source.startswith("trained") or not os.path.isfile(os.path.join(folder, "model.tflite")):
        return None
    with open(os.path.join(folder, "metrics.json")) as f:
        if json.load(f).get("sampler_options", {}) != options:
            return None
    with open(os.path.join(folder, "model.tflite"), "rb") as f:
        return f.read()


def bench_model(name, args):
    import numpy as np
    import tensorflow as tf

    from kapps import benchmarking, export

    model, source = load_model(name, args)
    # the options the recipes export with (RealNVP at temperature 1: its own distribution)
    options = {"ddpm": {"steps": args.ddim_steps}, "realnvp": {"temperature": 1.0}}.get(name, {})
    sampler = model.sampler(**options)
    flatbuffer = recipe_tflite(name, args, source, options) or export.to_tflite(sampler)
    runner = export.load_tflite(flatbuffer, num_threads=os.cpu_count())
    keras_call = tf.function(lambda *x: sampler(list(x) if len(x) > 1 else x[0], training=False))
    record = {"source": source, "sampler_options": options, "params": int(model.count_params()),
              "generator_params": int(sampler.count_params()), "tflite_bytes": len(flatbuffer), "batches": {}}
    for batch in args.batch_sizes:
        noise = model.noise(batch, seed=batch)
        inputs = [noise, (np.arange(batch) % model.num_classes).astype("int32")] if model.num_classes else [noise]
        named = dict(zip(runner.input_names, inputs)) if len(inputs) > 1 else {runner.input_names[0]: noise}
        record["batches"][batch] = {"tflite_max_abs_diff": export.tflite_parity(sampler, runner, inputs if len(inputs) > 1 else noise)}
        times = benchmarking.alternate_rounds(
            {"tflite": {"sample": {False: lambda: runner.run(named)}},
             "keras": {"sample": {False: lambda: keras_call(*inputs)}}},
            warmup=args.warmup, repeats=args.repeats, steps_per_round=args.steps, name=f"{name} batch {batch}",
        )
        summary = benchmarking.mode_summary(times, batch, "samples", ["sample"], [False], labels=("tflite", "keras"))
        record["batches"][batch].update(summary["sample"]["no_xla"])
    return record


def markdown(results):
    lines = ["| model | generator params | batch | Keras samples/s | TFLite samples/s | TFLite / Keras |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, record in results["models"].items():
        steps = record["sampler_options"].get("steps")
        label = f"{name} ({steps} DDIM steps)" if steps else name
        for batch, entry in record["batches"].items():
            lines.append(
                f"| {label} | {record['generator_params']:,} | {batch} | {entry['keras_samples_per_s']:,.1f} | "
                f"{entry['tflite_samples_per_s']:,.1f} | {entry['ratio']:.2f}x |"
            )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    import platform

    import keras
    import tensorflow as tf

    results = {
        "models": {name: bench_model(name, args) for name in args.models},
        "repeats": args.repeats, "steps_per_round": args.steps, "threads": os.cpu_count(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()},
    }
    # JSON keys are strings: the batch sizes too
    results = json.loads(json.dumps(results))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(markdown(results))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
