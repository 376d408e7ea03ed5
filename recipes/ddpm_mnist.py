"""A denoising diffusion model on MNIST: DDPM training, DDIM sampling, quality against steps.

    python -m recipes.ddpm_mnist --tfds-data-dir ../shared/tfds

Trains ``kapps.models.ddpm`` (Ho et al. 2020: a noise-predicting U-Net with a sinusoidal time
embedding and self-attention at 7x7, linear betas from 1e-4 to 0.02 over T = 1,000 steps, the
simple loss of eq. 14) on the 60,000 MNIST training digits under a ``tf.distribute``
strategy, with the 10,000 test digits as validation (the same loss on random time steps).
Samples with DDIM (Song et al. 2021, eta = 0) in ``--sample-steps`` steps; reports the
MNIST-specific FID and the confident share of 10,000 samples (see ``recipes/_generative.py``)
and, with ``--steps-sweep``, the same score of ``--sweep-samples`` samples for each number
of DDIM steps and for DDPM's own ancestral sampler over all 1,000 steps (``steps_sweep.png``).
Exports the generator with ``--export-steps`` DDIM steps unrolled in one builtin-only TFLite
graph (noise in, digits out), checked against Keras on fixed noise.

Measured on a 2-core CPU shared with other jobs, ``--jit-compile --epochs 1
--steps-per-epoch 350 --fid-samples 1000 --steps-sweep 10,25,50 --sweep-samples 500
--no-ancestral`` (350 steps: the first half of a 700-step schedule): test loss 0.0362,
MNIST-FID 274.6 and confident share 0.536 on 1,000 samples of 10 DDIM steps (real digits at
1,000: 2.61); 25 and 50 steps: 253.5 and 247.3 on 500. 27 minutes of training. Far from
converged: Ho et al. train for 800,000 steps.

Writes ``--out`` (default ``saved_models/ddpm_mnist/``): ``model.keras``, ``saved_model/`` and
``model.tflite`` (the DDIM generator), ``samples/epoch_NNN.png`` (the same 100 noise images
after every epoch), ``samples.png``, ``steps_sweep.png``, ``metrics.json``, ``history.csv``,
``curves.png``. Running the same command again resumes an interrupted run. ``--quick`` runs
the whole path on a few batches of real MNIST (tests).
"""

import os
import sys
import time

from recipes._common import run_recipe, setup, write_metrics
from recipes._generative import generative_parser, parse_generative

RECIPE = "ddpm_mnist"
TITLE = "DDPM on MNIST"
#: The MNIST configuration, sized for a 2-core CPU: 28 -> 14 -> 7 with attention at 7x7, base
#: width 16, one residual block per level (280,177 parameters; base width 32 with two blocks
#: took 7x longer per step).
MODEL = {"image_shape": (28, 28, 1), "base_filters": 16, "filter_multipliers": (1, 2, 2),
         "num_res_blocks": 1, "attention_resolutions": (7,), "dropout": 0.0}
#: ``--quick``: the same path with a two-level U-Net of width 8 (attention at 14x14), for tests.
QUICK_MODEL = {"image_shape": (28, 28, 1), "base_filters": 8, "filter_multipliers": (1, 2),
               "num_res_blocks": 1, "attention_resolutions": (14,), "dropout": 0.0}
TIMESTEPS = 1000


def _steps_list(text):
    import argparse

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not 1 <= v <= TIMESTEPS for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated step counts from 1 to {TIMESTEPS}")
    return values


def parse_args(argv=None):
    parser = generative_parser(RECIPE, __doc__, epochs=4, batch_size=64, learning_rate=1e-3)
    parser.add_argument("--sample-steps", type=int, default=10, help="DDIM steps of the scored samples and the per-epoch grids (default 10)")
    parser.add_argument("--export-steps", type=int, default=10, help="DDIM steps unrolled in the TFLite generator (default 10)")
    parser.add_argument("--steps-sweep", type=_steps_list, default=None, help="comma-separated DDIM step counts to score, e.g. 10,50,250,1000 (default: none)")
    parser.add_argument("--sweep-samples", type=int, default=1000, help="samples scored per step count of the sweep (default 1,000)")
    parser.add_argument("--no-ancestral", action="store_true", help="leave DDPM's 1,000-step ancestral sampler out of the sweep")
    args = parse_generative(parser, argv, positive=("sample_steps", "export_steps", "sweep_samples"))
    for flag in ("sample_steps", "export_steps"):
        if getattr(args, flag) > TIMESTEPS:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)} is not allowed; expected at most {TIMESTEPS}")
    if args.steps_sweep and args.no_quality:
        parser.error("--steps-sweep scores samples, which needs the classifier; drop --no-quality")
    return args


def steps_sweep(model, args, test_images, out):
    """Score ``--sweep-samples`` samples for each DDIM step count (and ancestral sampling);
    draw ``steps_sweep.png``. Returns a list of rows."""
    import keras

    from kapps import plots
    from kapps.metrics import SampleQuality

    scorer = SampleQuality(keras.saving.load_model(args.classifier, compile=False), test_images)
    count = 64 if args.quick else args.sweep_samples
    rows = []
    runs = [("ddim", steps) for steps in args.steps_sweep]
    if not args.no_ancestral:
        runs.append(("ancestral", TIMESTEPS))
    for method, steps in runs:
        begin = time.time()
        samples = model.sample(count, seed=3, steps=steps, method=method)
        seconds = time.time() - begin
        score = scorer(samples)
        rows.append({"method": method, "steps": steps, "samples": count,
                     "mnist_fid": round(score["fid"], 3), "confident_share": round(score["confident_share"], 4),
                     "samples_per_second": round(count / seconds, 2)})
        print(f"{method} {steps} steps: MNIST-FID {score['fid']:.2f}, confident {score['confident_share']:.3f}, {count / seconds:.1f} samples/s")
    ddim = [r for r in rows if r["method"] == "ddim"]
    series = {"DDIM (eta 0)": [r["mnist_fid"] for r in ddim]}
    plots.plot_series([r["steps"] for r in ddim], series, os.path.join(out, "steps_sweep.png"), xlabel="sampling steps",
                      ylabel=f"MNIST-FID ({count} samples)", log_x=True,
                      title=f"{TITLE}: quality against DDIM steps" + "".join(
                          f"; ancestral {r['steps']}: {r['mnist_fid']:.2f}" for r in rows if r["method"] == "ancestral"))
    return rows


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    start = time.time()
    import keras

    import kapps
    from kapps import training
    from recipes import _generative as common

    strategy, batch, out, chief = setup(args)
    train_ds, test_ds, test_images, test_labels, steps = common.mnist_data(args, batch)
    sample_steps = min(args.sample_steps, 2) if args.quick else args.sample_steps
    export_steps = min(args.export_steps, 2) if args.quick else args.export_steps
    with strategy.scope():
        model = kapps.build("ddpm", **(QUICK_MODEL if args.quick else MODEL), timesteps=TIMESTEPS)
        # warm-up then cosine decay (Ho et al. warm up over 5,000 steps at 2e-4 on CIFAR-10;
        # a short CPU run needs the larger rate)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(args.epochs * steps - 200, 1), warmup_target=args.learning_rate,
            warmup_steps=min(200, args.epochs * steps),
        )
        model.compile(optimizer=keras.optimizers.Adam(schedule, global_clipnorm=1.0), jit_compile=args.jit_compile)
    history = training.fit(
        model, train_ds, test_ds, epochs=args.epochs, steps_per_epoch=steps, out_dir=out, monitor="val_loss",
        extra_callbacks=[common.sample_grid_callback(model, out, TITLE, steps=sample_steps)],
    )
    train_seconds = time.time() - start
    if not chief:
        return {}

    test = model.evaluate(test_ds, return_dict=True, verbose=0)
    quality = common.sample_quality(model, args, test_images, out, f"{TITLE} ({sample_steps} DDIM steps)", steps=sample_steps)
    sweep = steps_sweep(model, args, test_images, out) if args.steps_sweep else []
    exported = common.export_generator(model, out, steps=export_steps)
    metrics = common.finish(model, history, args, out, start, {
        "recipe": RECIPE,
        "timesteps": TIMESTEPS,
        "sample_steps": sample_steps,
        "export_steps": export_steps,
        "global_batch_size": batch,
        "train_seconds": round(train_seconds, 1),
        "test": {k: round(float(v), 5) for k, v in test.items()},
        "quality": quality,
        "steps_sweep": sweep,
        **exported,
    }, TITLE)
    write_metrics(metrics, out, f"{RECIPE}: MNIST-FID {quality.get('mnist_fid', 'not scored')} with {sample_steps} DDIM steps")
    return metrics


if __name__ == "__main__":
    sys.exit(run_recipe(main))
