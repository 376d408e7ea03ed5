"""What every recipe's command line shares: the parser, the run flags (batch size per replica
or global, strategy, precision, XLA, output folder, seed, quick mode), the positive-integer
checks, the first steps of a run, and the wrapper that runs a recipe as a command. Importing
this does not import TensorFlow, so a bad flag is reported at once (a recipe's ``main`` parses
its flags before its first TensorFlow import)."""

import argparse
import json
import os
import sys

STRATEGIES = ["auto", "mirrored", "multi_worker", "tpu", "one_device"]
PRECISIONS = ["none", "auto", "mixed_float16", "mixed_bfloat16"]


def recipe_parser(recipe, doc):
    """An ``ArgumentParser`` for ``python -m recipes.<recipe>`` described by the first
    paragraph of the recipe's docstring ``doc``."""
    return argparse.ArgumentParser(prog=f"python -m recipes.{recipe}", description=doc.split("\n\n")[0])


def add_run_flags(parser, recipe, *, batch_size, batch_help=None, quick_help="a few batches of everything, for tests"):
    """Add the flags every recipe takes: ``--batch-size`` (per replica, default
    ``batch_size``) or ``--global-batch-size``, ``--strategy``, ``--mixed-precision``,
    ``--jit-compile``, ``--out`` (default ``saved_models/<recipe>``), ``--seed``, ``--quick``."""
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch-size", type=int, default=batch_size, help=batch_help or f"per replica (default {batch_size})")
    batch.add_argument("--global-batch-size", type=int, help="instead of --batch-size; must divide by the replicas")
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES)
    parser.add_argument("--mixed-precision", default="none", choices=PRECISIONS)
    parser.add_argument("--jit-compile", action="store_true", help="compile train steps with XLA")
    parser.add_argument("--out", default=os.path.join("saved_models", recipe))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=quick_help)


def parse(parser, argv, positive=()):
    """Parse ``argv``; exit with a one-line usage error when the batch sizes or any flag
    named in ``positive`` (attribute names) is below 1."""
    args = parser.parse_args(argv)
    for flag in (*positive, "batch_size", "global_batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')}={value} is not allowed; expected a positive integer")
    return args


def setup(args):
    """``kapps.training.start_run`` from the run flags: ``(strategy, global_batch, out, chief)``."""
    from kapps import training

    return training.start_run(
        args.strategy, seed=args.seed, mixed_precision=args.mixed_precision, out_dir=args.out,
        batch_size=None if args.global_batch_size else args.batch_size,
        global_batch=args.global_batch_size,
    )


def write_metrics(metrics, out, headline):
    """Write ``metrics`` to ``out/metrics.json`` (values JSON cannot hold written as text) and
    print ``headline`` with the wall time (``metrics["wall_seconds"]``)."""
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, default=str)
    print(f"{headline}; {metrics['wall_seconds']:.0f} s; wrote {out}")


def run_recipe(main, argv=None):
    """Run a recipe's ``main(argv)`` as a command: the exit status for ``sys.exit``.

    Errors a user can fix (a bad flag value, data that is missing or damaged, an output
    directory that cannot be written) print one line, ``<recipe>: error: ...``, on stderr and
    return 2, without a traceback; anything else is a bug and propagates with its traceback.
    Nothing here imports TensorFlow until an error has to be classified.
    """
    program = os.path.splitext(os.path.basename(sys.argv[0]))[0] if argv is None else "recipe"
    module = getattr(main, "__module__", "") or ""
    if module.startswith("recipes."):
        program = module.split(".", 1)[1]
    try:
        main(argv)
    except KeyboardInterrupt:
        print(f"{program}: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    except Exception as error:
        from kapps.data import DatasetCorruptError, DatasetNotFoundError
        from kapps.training import OutputDirError

        if not isinstance(error, (ValueError, DatasetNotFoundError, DatasetCorruptError, OutputDirError)):
            raise
        print(f"{program}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0
