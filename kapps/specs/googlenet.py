"""Registry entry of GoogLeNet (Inception v1)."""

from kapps.registry import ModelSpec

SPECS = [
    ModelSpec(
        name="googlenet",
        builder="kapps.models.classification.googlenet:googlenet",
        task="classification",
        family="GoogLeNet",
        paper="Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich 2014, "
        "Going Deeper with Convolutions",
        input_shape=(224, 224, 3),
        params=6_998_552,
        trainable_params=6_998_552,
        published_params=6_998_552,
        published_kind="total",
        published_source="Szegedy et al. 2014, Table 1: its params column sums to 6,797.7K "
        "(about 6.8M, rounded, biases left out, and its 4c/4d/conv1 entries disagree with the "
        "table's own filter numbers); counted exactly from the table's filters with biases and "
        "without the auxiliary heads: 6,998,552",
        flops=3_165_343_744,
        # Batch-normalized with LRN kept on, three of the nine modules, 1/16 width. With one
        # or two filters in some branches, a plain ReLU unit that random weights leave dead
        # would starve its kernels of gradient; batch statistics keep every unit alive. The
        # paper's plain form is checked with a fixed seed in tests/test_googlenet.py.
        tiny={
            "input_shape": (32, 32, 3),
            "num_classes": 10,
            "width_multiplier": 0.0625,
            "batch_norm": True,
            "lrn": True,
            "inception_table": (
                ("3a", (64, 96, 128, 16, 32, 32)),
                "pool",
                ("4a", (192, 96, 208, 16, 48, 64)),
                "pool",
                ("5b", (384, 192, 384, 48, 128, 128)),
            ),
        },
        tiny_params=8_809,
    ),
]
