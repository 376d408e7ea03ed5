"""Is the LeNet-5 MNIST input pipeline off the critical path?

Measures, in one process, the examples per second that ``kapps.data.mnist`` delivers (first
epoch from the TFDS files, then from the in-memory cache) and the examples per second the
recipe's training step consumes when fed from memory. The pipeline should be at least 5x
faster than the model, so training never waits for data.

    python benchmarks/lenet5_mnist_pipeline.py --tfds-data-dir ../shared/tfds
"""

import argparse
import json
import os
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tfds-data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=32, help="the recipe's default (one replica)")
    parser.add_argument("--variant", default="modern", choices=["lecun98", "modern"])
    parser.add_argument("--steps", type=int, default=300, help="training steps timed")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "lenet5_mnist_pipeline.json"))
    return parser.parse_args(argv)


def examples_per_second(dataset, limit=None):
    count, start = 0, time.perf_counter()
    for i, (images, _) in enumerate(dataset):
        if limit is not None and i >= limit:
            break
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np

    import kapps
    from kapps import data

    train = data.mnist("train", args.batch_size, data_dir=args.tfds_data_dir, download=False, seed=0)
    cold = examples_per_second(train)  # first epoch: reads and decodes the TFDS files, fills the cache
    warm = examples_per_second(train)  # later epochs: from the cache, reshuffled

    model = kapps.build("lenet5", input_shape=(28, 28, 1), variant=args.variant)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    images, labels = next(iter(train))
    images, labels = np.asarray(images), np.asarray(labels)
    for _ in range(20):  # trace and warm up
        model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(images, labels)
    model_rate = args.steps * args.batch_size / (time.perf_counter() - start)

    results = {
        "batch_size": args.batch_size,
        "variant": args.variant,
        "pipeline_first_epoch_examples_per_s": cold,
        "pipeline_cached_examples_per_s": warm,
        "train_step_examples_per_s": model_rate,
        "ratio_cached_pipeline_to_model": warm / model_rate,
        "ratio_first_epoch_pipeline_to_model": cold / model_rate,
    }
    print(f"pipeline, first epoch : {cold:12,.0f} examples/s")
    print(f"pipeline, cached      : {warm:12,.0f} examples/s")
    print(f"training step (model) : {model_rate:12,.0f} examples/s")
    print(f"pipeline / model      : {warm / model_rate:12.1f}x cached, {cold / model_rate:.1f}x first epoch")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
