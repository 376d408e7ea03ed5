"""Language models: GPT (decoder-only; Radford et al. 2018, 2019) with cached generation, and
BERT (encoder-only; Devlin et al. 2019) with its pre-training and fine-tuning heads."""

from kapps.models.language.bert import (
    BertMaskedLM,
    GatherPositions,
    OutputBias,
    bert,
    bert_base,
    bert_classifier,
    bert_large,
    bert_masked_lm,
    bert_tiny,
    load_keras_hub_bert_weights,
)
from kapps.models.language.generation import CachedGPT, Generator, generate, pad_prompts
from kapps.models.language.gpt import gpt, gpt2_large, gpt2_medium, gpt2_small, gpt2_xl, gpt_char

__all__ = [
    "BertMaskedLM", "GatherPositions", "OutputBias", "bert", "bert_base", "bert_classifier",
    "bert_large", "bert_masked_lm", "bert_tiny", "load_keras_hub_bert_weights",
    "CachedGPT", "Generator", "generate", "gpt", "gpt2_large", "gpt2_medium", "gpt2_small",
    "gpt2_xl", "gpt_char", "pad_prompts",
]
