"""Registry entries of BERT (Devlin et al. 2019): the encoder (backbone) with its pooler.

All three take three int32 token sequences of any length (``input_shape=(None,)``:
``token_ids``, ``segment_ids``, ``padding_mask``) and return ``sequence_output`` and
``pooled_output``. The counts use the released 30,522-token uncased WordPiece vocabulary, 512
positions and 2 segments, and equal keras-hub's ``BertBackbone`` presets
(``bert_tiny_en_uncased`` 4,385,920, ``bert_base_en_uncased`` 109,482,240,
``bert_large_en_uncased`` 335,141,888), which are the released checkpoints; the paper rounds
to 110M and 340M. FLOPs are per example at 128 tokens (the length of 90% of the paper's
pre-training steps, appendix A.2).
"""

from kapps.registry import ModelSpec

_PAPER = (
    "Devlin et al. 2019, BERT: Pre-training of Deep Bidirectional Transformers for Language "
    "Understanding"
)

#: 50 tokens, 16 positions, 2 segments, width 16, two blocks of two heads.
_TINY = {
    "vocab_size": 50,
    "max_length": 16,
    "num_layers": 2,
    "hidden_dim": 16,
    "num_heads": 2,
    "mlp_dim": 32,
}
_TINY_PARAMS = 5_840

# (variant, total = trainable, FLOPs at 128 tokens, source of the published figure)
_VARIANTS = (
    ("tiny", 4_385_920, 117_473_280,
     "BERT-Tiny of Turc et al. 2019 (L=2, H=128, A=2), as keras-hub's bert_tiny_en_uncased "
     "preset (4,385,920 with the pooler)"),
    ("base", 109_482_240, 22_348_431_360,
     "BERT-Base (L=12, H=768, A=12) with the pooler, as keras-hub's bert_base_en_uncased "
     "preset and the released checkpoint (109,482,240); the paper says 110M"),
    ("large", 335_141_888, 78_922_121_216,
     "BERT-Large (L=24, H=1024, A=16) with the pooler, as keras-hub's bert_large_en_uncased "
     "preset and the released checkpoint (335,141,888); the paper says 340M"),
)

SPECS = [
    ModelSpec(
        name=f"bert_{key}",
        builder=f"kapps.models.language.bert:bert_{key}",
        task="language",
        family="BERT",
        paper=_PAPER,
        input_shape=(None,),
        params=total,
        trainable_params=total,
        published_params=total,
        published_kind="total",
        published_source=source,
        flops=flops,
        flops_input_shape=(128,),
        tiny=_TINY,
        tiny_params=_TINY_PARAMS,
    )
    for key, total, flops, source in _VARIANTS
]
