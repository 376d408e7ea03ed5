"""Registry entries of GPT (Radford et al. 2018, 2019): decoder-only language models.

Each takes ``token_ids`` of any length up to its positions (``input_shape=(None,)``) and
returns next-token logits at every position. The GPT-2 sizes use the released 50,257-token
byte-pair vocabulary and 1,024 positions, with the output projection tied to the token
embedding; their counts equal keras-hub's ``GPT2Backbone`` presets (``gpt2_base_en``
124,439,808, ``gpt2_medium_en`` 354,823,168, ``gpt2_large_en`` 774,030,080,
``gpt2_extra_large_en`` 1,557,611,200), which the paper's Table 2 rounds to 117M, 345M,
762M and 1542M (its figures leave out the position embeddings, as its authors later noted).
FLOPs are per sequence at the full context (1,024 tokens; 256 for ``gpt_char``); the three
larger GPT-2 sizes are not traced for FLOPs (tens of seconds of the test budget each).
"""

from kapps.registry import ModelSpec

_PAPER = "Radford et al. 2019, Language Models are Unsupervised Multitask Learners"

#: 30 tokens, 16 positions, width 16, two blocks of two heads; one dropout rate for all, so
#: the variants' tiny networks are the same (the contract runs in full once).
_TINY = {"vocab_size": 30, "max_length": 16, "num_layers": 2, "num_heads": 2,
         "hidden_dim": 16, "mlp_dim": 32, "dropout": 0.1}
_TINY_PARAMS = 5_216

_SOURCE = "keras-hub's GPT2Backbone preset {preset} ({count}); the paper's Table 2 says {rounded}"

# (name, total, FLOPs at 1,024 tokens or None, keras-hub preset, the paper's rounding)
_VARIANTS = (
    ("gpt2_small", 124_439_808, 291_648_307_200, "gpt2_base_en", "117M"),
    ("gpt2_medium", 354_823_168, None, "gpt2_medium_en", "345M"),
    ("gpt2_large", 774_030_080, None, "gpt2_large_en", "762M"),
    ("gpt2_xl", 1_557_611_200, None, "gpt2_extra_large_en", "1542M"),
)

SPECS = [
    ModelSpec(
        name=name,
        builder=f"kapps.models.language.gpt:{name}",
        task="language",
        family="GPT",
        paper=_PAPER,
        input_shape=(None,),
        params=total,
        trainable_params=total,
        published_params=total,
        published_kind="total",
        published_source=_SOURCE.format(preset=preset, count=f"{total:,}", rounded=rounded),
        flops=flops,
        flops_input_shape=(1024,),
        tiny=_TINY,
        tiny_params=_TINY_PARAMS,
    )
    for name, total, flops, preset, rounded in _VARIANTS
] + [
    ModelSpec(
        name="gpt_char",
        builder="kapps.models.language.gpt:gpt_char",
        task="language",
        family="GPT",
        paper=_PAPER,
        input_shape=(None,),
        params=10_795_008,
        trainable_params=10_795_008,
        published_params=10_795_008,
        published_kind="total",
        published_source=(
            "nanoGPT's Shakespeare character model (6 layers, width 384, 6 heads, 256 "
            "positions, config/train_shakespeare_char.py) over 128 ASCII code points instead "
            "of its 65 characters, counted exactly; no published total for this vocabulary"
        ),
        flops=6_064_963_584,
        flops_input_shape=(256,),
        tiny=_TINY,
        tiny_params=_TINY_PARAMS,
    ),
]
