"""Sequence-to-sequence builders: Seq2Seq with attention (Bahdanau et al. 2015) and the
Transformer (Vaswani et al. 2017), with greedy and beam-search decoding for both
(``kapps.models.sequence.search``). Each model takes
``source_ids`` and ``target_ids`` (the target shifted right) and returns next-token logits."""

from kapps.models.sequence.search import beam_search, decoder_for, greedy_function, greedy_search
from kapps.models.sequence.seq2seq import Seq2SeqDecoder, seq2seq_attention
from kapps.models.sequence.transformer import (
    TransformerDecoder,
    transformer,
    transformer_base,
    transformer_big,
)

__all__ = [
    "Seq2SeqDecoder", "TransformerDecoder", "beam_search", "decoder_for", "greedy_function", "greedy_search",
    "seq2seq_attention", "transformer", "transformer_base", "transformer_big",
]
