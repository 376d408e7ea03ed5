"""Text generation for GPT models, with a key/value cache.

A GPT scores the next token from all the tokens before it. Generating ``n`` tokens by
running the model on the whole prefix at every step costs ``O(n^2)`` token passes. But the
keys and values a block computes for a token never change once the token is there (the
causal mask keeps later tokens out of them), so they can be kept: each new token then costs
one position through the projections and MLPs, plus one attention row over the cached keys.

``CachedGPT`` runs a ``kapps.models.language.gpt`` model that way. Its cache is a
fixed-size buffer per block, ``(keys, values)`` each ``(batch, heads, max_length,
head_dim)``, written in place (``MultiHeadAttention(cache_index=...)``), so one compiled
loop, XLA, and a TFLite ``WHILE`` can carry it. The prompt fills the cache in one pass
(*prefill*), then every step feeds one token.

``Generator`` is the loop: it wraps keras-hub's samplers (greedy, top-k, top-p, random,
beam search; temperature, a stop token, a seed) around the cached step (or, with
``use_cache=False``, around a full forward pass over the prefix, the reference the cache is
tested against) and compiles it once. ``generate`` is the one-call form.

Example:
    >>> generator = Generator(model, max_length=200, sampler="top_k", top_k=10, seed=1)
    >>> tokens = generator([[5, 12, 9], [7]])  # (2, 200): prompts, then generated tokens
"""

import numpy as np

from kapps._checks import check_choice, check_positive_int

#: Accepted values of ``sampler``.
SAMPLERS = ("greedy", "top_k", "top_p", "random", "beam")


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"model={getattr(model, 'name', model)!r} is not a kapps GPT: it has no layer "
            f"{name!r}; build it with kapps.models.language.gpt."
        ) from None


class CachedGPT:
    """Run a kapps GPT one step at a time with a fixed-size key/value cache.

    The model's own layers are called, so the cached path uses exactly the trained weights
    (nothing is copied).

    Args:
        model: a model built by ``kapps.models.language.gpt`` (or a variant).

    Attributes:
        num_layers, num_heads, head_dim, max_positions: read from the model.

    Example:
        >>> cached = CachedGPT(model)
        >>> cache = cached.empty_cache(batch_size=1, max_length=64)
        >>> logits, cache = cached.call_with_cache(prompt_ids, cache, 0)  # prefill
        >>> logits, cache = cached.call_with_cache(next_ids, cache, prompt_length)
    """

    def __init__(self, model):
        self.model = model
        self.token_embedding = _layer(model, "token_embedding")
        self.position_embedding = _layer(model, "position_embedding")
        self.final_norm = _layer(model, "final_norm")
        self.blocks = []
        while True:
            try:
                self.blocks.append(model.get_layer(f"block{len(self.blocks) + 1}"))
            except ValueError:
                break
        if not self.blocks:
            _layer(model, "block1")  # raises the error above
        attention = self.blocks[0].attention
        self.num_layers = len(self.blocks)
        self.num_heads = attention.num_heads
        self.head_dim = attention.key_dim
        self.max_positions = self.position_embedding.num_positions

    def empty_cache(self, batch_size, max_length, dtype=None):
        """Zeros for every block: a tuple of ``num_layers`` pairs ``(keys, values)``, each
        ``(batch_size, heads, max_length, head_dim)``."""
        from keras import ops

        dtype = dtype or self.blocks[0].compute_dtype
        shape = (batch_size, self.num_heads, max_length, self.head_dim)
        return tuple((ops.zeros(shape, dtype), ops.zeros(shape, dtype)) for _ in self.blocks)

    def call_with_cache(self, token_ids, cache, index):
        """Logits for ``token_ids`` standing at positions ``index, index + 1, ...``.

        Args:
            token_ids: ``(batch, n)`` int32.
            cache: the tuple of ``empty_cache`` (keys and values of positions before
                ``index`` already written).
            index: scalar int32: position of the first of ``token_ids``.

        Returns:
            ``(logits, cache)``: logits ``(batch, n, vocab)`` float32 and the cache with
            positions ``index .. index + n - 1`` written.
        """
        from keras import ops

        x = self.token_embedding(token_ids)  # (batch, n, hidden)
        x = self.position_embedding(x, start=index)
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache):
            x, layer_cache = block(
                x, use_causal_mask=True, cache=layer_cache, cache_index=index
            )
            new_cache.append(layer_cache)
        x = self.final_norm(x)
        logits = ops.cast(self.token_embedding(x, reverse=True), "float32")
        return logits, tuple(new_cache)


def _check_number(name, value, low, high, allowed):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not low < value <= high
    ):
        raise ValueError(f"{name}={value!r} is not allowed; expected {allowed}.")
    return float(value)


def _make_sampler(sampler, temperature, top_k, top_p, num_beams, seed):
    import keras_hub

    common = {"temperature": temperature}
    if sampler == "greedy":
        return keras_hub.samplers.GreedySampler(**common)
    if sampler == "top_k":
        return keras_hub.samplers.TopKSampler(k=top_k, seed=seed, **common)
    if sampler == "top_p":
        return keras_hub.samplers.TopPSampler(p=top_p, seed=seed, **common)
    if sampler == "random":
        return keras_hub.samplers.RandomSampler(seed=seed, **common)
    return keras_hub.samplers.BeamSampler(num_beams=num_beams, **common)


def pad_prompts(prompts, max_length, pad_id=0):
    """Prompts (a list of id lists, or an int array ``(batch, length)``) as a padded
    ``(batch, max_length)`` int32 array and a boolean mask of the prompt positions.

    Raises:
        ValueError: for an empty prompt or one longer than ``max_length``.
    """
    if isinstance(prompts, np.ndarray) or hasattr(prompts, "numpy"):
        array = np.asarray(prompts)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2:
            raise ValueError(
                f"prompts has shape {array.shape}; expected (batch, length) token ids or a list "
                "of id lists."
            )
        prompts = [list(row) for row in array]
    elif not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(
            f"prompts={prompts!r} is not allowed; expected a non-empty list of id lists or a "
            "(batch, length) int array."
        )
    elif all(isinstance(t, (int, np.integer)) for t in prompts):
        prompts = [list(prompts)]  # one prompt given as a flat list
    ids = np.full((len(prompts), max_length), pad_id, dtype="int32")
    mask = np.zeros((len(prompts), max_length), dtype=bool)
    for row, prompt in enumerate(prompts):
        prompt = [int(t) for t in prompt]
        if not 1 <= len(prompt) <= max_length:
            raise ValueError(
                f"prompt {row} has {len(prompt)} tokens; expected 1 to max_length={max_length}."
            )
        ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = True
    return ids, mask


class Generator:
    """A compiled generation function for a kapps GPT.

    Every row of the output is the prompt followed by generated tokens, ``max_length`` in
    all. Rows may have prompts of different lengths: generation starts after the shortest
    and keeps the prompt tokens where a row's prompt is longer (keras-hub's convention).
    After a row produces ``stop_token_id`` the rest of it is ``pad_id``, and the loop ends
    when every row has stopped.

    Args:
        model: a ``kapps.models.language.gpt`` model.
        max_length: total tokens per row (prompt included), at most the model's positions.
        sampler: ``"greedy"``, ``"top_k"``, ``"top_p"``, ``"random"`` (from the whole
            distribution) or ``"beam"`` (beam search, the best beam is returned).
        temperature: logits are divided by it before the softmax (below 1: sharper).
        top_k: candidates kept by ``"top_k"``.
        top_p: probability mass kept by ``"top_p"`` (nucleus sampling).
        num_beams: beams of ``"beam"``.
        stop_token_id: optional id that ends a row (an end-of-text token, a newline).
        seed: optional int seed of the random samplers: the same seed, the same tokens.
        use_cache: True for the key/value cache; False runs the model on the whole prefix
            at every step (slow; the reference the cache is tested against).
        pad_id: id written after a stop token and in unused prompt slots.
        jit_compile: compile the loop with XLA (with the cache only); on a 2-core CPU it
            made cached generation 3.3x faster at batch 1 (``benchmarks/gpt_vs_keras_hub.py``).

    Call arguments:
        prompts: a list of id lists, or a ``(batch, length)`` int array.

    Returns:
        A ``(batch, max_length)`` int32 numpy array.

    Raises:
        ValueError: for bad arguments or prompts.

    Example:
        >>> generate_text = Generator(model, max_length=100, sampler="top_p", top_p=0.9, seed=0)
        >>> tokens = generate_text([[17, 4, 33]])

    Papers: Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration" (top-p);
    Fan et al. 2018, "Hierarchical Neural Story Generation" (top-k).
    """

    def __init__(
        self,
        model,
        max_length,
        *,
        sampler="greedy",
        temperature=1.0,
        top_k=10,
        top_p=0.9,
        num_beams=4,
        stop_token_id=None,
        seed=None,
        use_cache=True,
        pad_id=0,
        jit_compile=False,
    ):
        import tensorflow as tf

        self.cached = CachedGPT(model)
        self.model = model
        self.max_length = check_positive_int("max_length", max_length)
        if max_length > self.cached.max_positions:
            raise ValueError(
                f"max_length={max_length!r} is not allowed; the model has "
                f"{self.cached.max_positions} positions."
            )
        self.sampler_name = check_choice("sampler", sampler, SAMPLERS)
        self.temperature = _check_number(
            "temperature", temperature, 0.0, float("inf"), "a number > 0"
        )
        self.top_k = check_positive_int("top_k", top_k)
        self.top_p = _check_number("top_p", top_p, 0.0, 1.0, "a number in (0, 1]")
        self.num_beams = check_positive_int("num_beams", num_beams)
        vocab = self.cached.token_embedding.vocab_size
        for name, value in (("stop_token_id", stop_token_id), ("pad_id", pad_id)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer))
                or not 0 <= value < vocab
            ):
                raise ValueError(
                    f"{name}={value!r} is not allowed; expected None or a token id in "
                    f"[0, {vocab})."
                )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed={seed!r} is not allowed; expected None or an int.")
        if not isinstance(use_cache, bool):
            raise ValueError(f"use_cache={use_cache!r} is not allowed; expected True or False.")
        if not use_cache and jit_compile:
            # the uncached loop runs the model on a prefix that grows every step; XLA compiles
            # such a loop for minutes and ran it slower than without XLA
            raise ValueError(
                "jit_compile=True is not allowed with use_cache=False; the uncached loop's "
                "growing prefix has no static shape for XLA. Use the cache, or no XLA."
            )
        self.stop_token_id = stop_token_id
        self.seed = seed
        self.use_cache = use_cache
        self.pad_id = int(pad_id)
        self.sampler = _make_sampler(
            self.sampler_name, self.temperature, self.top_k, self.top_p, self.num_beams, seed
        )
        self._function = tf.function(self._generate, jit_compile=jit_compile, reduce_retracing=True)

    def _generate(self, token_ids, mask):
        from keras import ops

        batch = ops.shape(token_ids)[0]
        # generation starts after the shortest prompt
        index = ops.min(ops.sum(ops.cast(mask, "int32"), axis=1))
        stop = None if self.stop_token_id is None else (self.stop_token_id,)
        if self.use_cache:
            cache = self.cached.empty_cache(batch, self.max_length)
            # prefill: one pass over the whole buffer writes every prompt position's keys
            # and values (slots after a prompt hold junk that the causal mask hides until
            # the step at that position overwrites them)
            _, cache = self.cached.call_with_cache(token_ids, cache, 0)

            def next_token(prompt, cache, index):
                # the token at index - 1 predicts position index
                last = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
                logits, cache = self.cached.call_with_cache(last, cache, index - 1)
                return logits[:, 0, :], None, cache
        else:
            cache = ops.zeros((batch, 1))  # the samplers carry a cache; this one is unused

            def next_token(prompt, cache, index):
                prefix = ops.slice(prompt, [0, 0], [ops.shape(prompt)[0], index])
                logits = self.model(prefix, training=False)  # (batch, index, vocab)
                return ops.cast(logits[:, -1, :], "float32"), None, cache

        return self.sampler(
            next_token, token_ids, cache=cache, index=index, mask=mask, stop_token_ids=stop
        )

    def __call__(self, prompts):
        ids, mask = pad_prompts(prompts, self.max_length, self.pad_id)
        tokens = np.asarray(self._function(ids, mask)).astype("int32")
        if self.stop_token_id is not None:
            # after the first generated stop token: padding
            generated_stop = (tokens == self.stop_token_id) & ~mask
            after = np.cumsum(generated_stop, axis=1) - generated_stop > 0
            tokens[after] = self.pad_id
        return tokens


def generate(model, prompts, max_length, **kwargs):
    """Generate from ``model`` once: ``Generator(model, max_length, **kwargs)(prompts)``.

    For repeated calls keep a ``Generator`` (it compiles once).

    Example:
        >>> tokens = generate(model, [[1, 2, 3]], max_length=50, sampler="greedy")
    """
    return Generator(model, max_length, **kwargs)(prompts)


def greedy_function(model, max_length, *, stop_token_id=None, pad_id=0):
    """Greedy generation as one ``tf.function`` of fixed shapes, for export (TFLite).

    The loop is written with TensorFlow ops that TFLite runs as builtins (``WHILE``,
    ``DYNAMIC_UPDATE_SLICE``, ``ARG_MAX``; keras-hub's samplers use ``keras.ops.argmax``,
    which TensorFlow lowers through ops that need Flex). Its tokens equal
    ``Generator(model, max_length, sampler="greedy")``'s for the same prompt.

    Args:
        model: a kapps GPT.
        max_length: total tokens (prompt included).
        stop_token_id: optional id that ends generation; later slots get ``pad_id``.
        pad_id: the padding id.

    Returns:
        A ``tf.function`` taking ``prompt_ids`` ``int32 (1, max_length)`` (the prompt, then
        any padding) and ``prompt_length`` ``int32 (1,)``, returning ``token_ids`` ``int32
        (1, max_length)``.
    """
    import tensorflow as tf

    cached = CachedGPT(model)
    check_positive_int("max_length", max_length)
    if max_length > cached.max_positions:
        raise ValueError(
            f"max_length={max_length!r} is not allowed; the model has {cached.max_positions} "
            "positions."
        )
    stop = -1 if stop_token_id is None else int(stop_token_id)

    @tf.function(
        input_signature=[
            tf.TensorSpec((1, max_length), tf.int32, name="prompt_ids"),
            tf.TensorSpec((1,), tf.int32, name="prompt_length"),
        ]
    )
    def generate_greedy(prompt_ids, prompt_length):
        length = tf.clip_by_value(prompt_length[0], 1, max_length)
        positions = tf.range(max_length, dtype=tf.int32)
        tokens = tf.where(positions[None] < length, prompt_ids, pad_id)  # (1, max_length)
        cache = cached.empty_cache(1, max_length, dtype="float32")
        _, cache = cached.call_with_cache(tokens, cache, 0)  # prefill

        def body(index, tokens, cache, done):
            last = tf.slice(tokens, [0, index - 1], [1, 1])  # (1, 1)
            logits, cache = cached.call_with_cache(last, cache, index - 1)
            token = tf.cast(tf.argmax(logits[:, -1, :], axis=-1, output_type=tf.int32), tf.int32)
            token = tf.reshape(token, (1, 1))
            tokens = tf.tensor_scatter_nd_update(
                tokens, tf.reshape(tf.stack([0, index]), (1, 2)), tf.reshape(token, (1,))
            )
            return index + 1, tokens, cache, tf.equal(token[0, 0], stop)

        def cond(index, tokens, cache, done):
            return tf.logical_and(index < max_length, tf.logical_not(done))

        _, tokens, _, _ = tf.while_loop(
            cond, body, (length, tokens, cache, tf.constant(False)),
            maximum_iterations=max_length,
        )
        return tokens

    return generate_greedy
