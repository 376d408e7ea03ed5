"""Registry entries of the sequence-to-sequence family: the Transformer (Vaswani et al. 2017)
and Seq2Seq with attention (Bahdanau, Cho, Bengio 2015).

Both take token ids of any length (``input_shape=(None,)``: ``source_ids`` and
``target_ids``) and return logits over the target vocabulary at every target position.

``transformer_base`` and ``transformer_big`` are the paper's Table 3 models with its shared
37,000-token byte-pair vocabulary (WMT 2014 English-German), the source embedding, the target
embedding and the pre-softmax projection being one matrix (section 3.4), post-LN, no bias on
the output projection: 63,082,496 and 214,245,376 parameters, which the paper rounds to 65M
and 213M (its own count is not spelled out; the rounding may include details of
tensor2tensor's implementation). FLOPs are per example at 32 source and 32 target tokens.
"""

from kapps.registry import ModelSpec

_TRANSFORMER_PAPER = "Vaswani et al. 2017, Attention Is All You Need"

_TRANSFORMER_SOURCE = (
    "counted exactly for the paper's Table 3 sizes with a shared 37,000-token vocabulary "
    "(section 3.4 ties the two embeddings and the pre-softmax projection; no output bias, "
    "post-LN); the paper rounds to {rounded}"
)

_TRANSFORMER_TINY = {"vocab_size": 24, "hidden_dim": 16, "num_layers": 2, "num_heads": 2,
                     "mlp_dim": 32}

_SEQ2SEQ_PAPER = (
    "Bahdanau, Cho, Bengio 2015, Neural Machine Translation by Jointly Learning to Align and "
    "Translate"
)

SPECS = [
    ModelSpec(
        name="seq2seq_attention",
        builder="kapps.models.sequence.seq2seq:seq2seq_attention",
        task="sequence",
        family="Seq2Seq",
        paper=_SEQ2SEQ_PAPER,
        input_shape=(None,),
        params=80_442_000,
        trainable_params=80_442_000,
        published_params=80_442_000,
        published_kind="total",
        published_source=(
            "RNNsearch's sizes in the paper's appendix A.2 (30,000-word vocabularies, 620-wide "
            "embeddings, 1000-unit GRUs of the Cho et al. 2014 form, 1000-unit alignment model, "
            "500-unit maxout readout), counted exactly layer by layer; the paper states no total"
        ),
        flops=None,
        tiny={"source_vocab_size": 20, "target_vocab_size": 20, "embedding_dim": 8,
              "units": 8, "attention_units": 8, "maxout_units": 8},
        tiny_params=2_908,
    ),
    ModelSpec(
        name="transformer_base",
        builder="kapps.models.sequence.transformer:transformer_base",
        task="sequence",
        family="Transformer",
        paper=_TRANSFORMER_PAPER,
        input_shape=(None,),
        params=63_082_496,
        trainable_params=63_082_496,
        published_params=63_082_496,
        published_kind="total",
        published_source=_TRANSFORMER_SOURCE.format(rounded="65M"),
        flops=4_068_737_024,
        flops_input_shape=(32,),
        tiny=_TRANSFORMER_TINY,
        tiny_params=11_520,
    ),
    ModelSpec(
        name="transformer_big",
        builder="kapps.models.sequence.transformer:transformer_big",
        task="sequence",
        family="Transformer",
        paper=_TRANSFORMER_PAPER,
        input_shape=(None,),
        params=214_245_376,
        trainable_params=214_245_376,
        published_params=214_245_376,
        published_kind="total",
        published_source=_TRANSFORMER_SOURCE.format(rounded="213M"),
        flops=13_774_618_624,
        flops_input_shape=(32,),
        tiny={**_TRANSFORMER_TINY, "num_heads": 4},
        tiny_params=11_520,
    ),
]
