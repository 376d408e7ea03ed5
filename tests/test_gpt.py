"""GPT: the model, the key/value cache, generation with every sampler, and TFLite generation.

The canonical GPT-2 counts are pinned by tests/test_registry.py (built without initialising
the weights); the contract (shapes, gradients, config, .keras, TFLite, MirroredStrategy) runs
on the tiny configuration in tests/test_contract.py.
"""

import keras
import numpy as np
import pytest

from kapps import export
from kapps.models.language import CachedGPT, Generator, generate, gpt, gpt2_small, pad_prompts
from kapps.models.language.generation import greedy_function

VOCAB, POSITIONS = 23, 32


@pytest.fixture(scope="module")
def model():
    """A tiny GPT with large random weights, so that greedy and sampled tokens vary (a fresh
    initialisation predicts nearly the same token everywhere)."""
    keras.utils.set_random_seed(7)
    net = gpt(vocab_size=VOCAB, max_length=POSITIONS, num_layers=2, num_heads=2, hidden_dim=16,
              mlp_dim=32, dropout=0.0)
    rng = np.random.default_rng(2)
    net.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") for w in net.get_weights()])
    return net


LENGTH = 20


@pytest.fixture(scope="module")
def greedy(model):
    """The cached greedy generator (compiled once for the module)."""
    return Generator(model, LENGTH)


PROMPTS = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]]


def test_tied_output_projection_and_count():
    net = gpt(vocab_size=VOCAB, max_length=POSITIONS, num_layers=1, num_heads=2, hidden_dim=8,
              mlp_dim=16)
    # token (23 x 8) + positions (32 x 8) + one block + final norm; no second 23 x 8 matrix
    block = 4 * (8 * 8 + 8) + 2 * 2 * 8 + (8 * 16 + 16) + (16 * 8 + 8)
    assert net.count_params() == VOCAB * 8 + POSITIONS * 8 + block + 2 * 8
    assert [layer.name for layer in net.layers].count("token_embedding") == 1


def test_causal_later_tokens_do_not_change_earlier_logits(model):
    a = np.array([[1, 2, 3, 4, 5, 6]], "int32")
    b = a.copy()
    b[0, 4:] = [11, 12]
    la, lb = model(a), model(b)
    np.testing.assert_allclose(la[0, :4], lb[0, :4], atol=1e-6)
    assert not np.allclose(la[0, 4:], lb[0, 4:])


def test_cached_steps_equal_the_full_forward_pass(model):
    ids = np.random.default_rng(0).integers(0, VOCAB, (2, 12)).astype("int32")
    full = keras.ops.convert_to_numpy(model(ids))
    cached = CachedGPT(model)
    cache = cached.empty_cache(2, 16)
    logits, cache = cached.call_with_cache(ids[:, :5], cache, 0)  # prefill 5 tokens
    steps = [keras.ops.convert_to_numpy(logits)]
    for i in range(5, 12):  # then one token at a time
        logits, cache = cached.call_with_cache(ids[:, i:i + 1], cache, i)
        steps.append(keras.ops.convert_to_numpy(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


@pytest.mark.parametrize("sampler", ["greedy", "top_p", "beam"])
def test_cached_and_uncached_generation_give_identical_tokens(model, greedy, sampler):
    # top_k and random share top_p's path through keras-hub's samplers (a distribution, a
    # seeded draw); greedy and beam search are the deterministic ones
    kwargs = dict(sampler=sampler, seed=3, top_p=0.8, num_beams=3, temperature=0.9)
    cached = greedy(PROMPTS) if sampler == "greedy" else Generator(model, LENGTH, **kwargs)(PROMPTS)
    uncached = Generator(model, LENGTH, use_cache=False, **kwargs)(PROMPTS)
    np.testing.assert_array_equal(cached, uncached)
    assert cached.shape == (3, LENGTH)
    for row, prompt in zip(cached, PROMPTS):  # prompts kept
        np.testing.assert_array_equal(row[: len(prompt)], prompt)
    assert len(set(cached[:, 5:].ravel().tolist())) > 2  # not one repeated token


def test_seed_makes_sampling_reproducible(model):
    # without the seed the two runs would draw different tokens
    a = generate(model, PROMPTS, LENGTH, sampler="top_k", top_k=8, seed=1)
    b = generate(model, PROMPTS, LENGTH, sampler="top_k", top_k=8, seed=1)
    np.testing.assert_array_equal(a, b)


def _stop_token(free):
    """A token that greedy generation produces after the prompt [1, 2, 3] but not at once."""
    return next(int(t) for t in free[4:] if t != free[3] and t not in (1, 2, 3))


def test_stop_token_pads_the_rest(model, greedy):
    free = greedy([[1, 2, 3]])[0]
    stop = _stop_token(free)
    stopped = generate(model, [[1, 2, 3]], LENGTH, stop_token_id=stop, pad_id=0)[0]
    first = 3 + list(free[3:]).index(stop)
    np.testing.assert_array_equal(stopped[: first + 1], free[: first + 1])
    assert (stopped[first + 1:] == 0).all() and first + 1 < LENGTH


def test_greedy_function_and_tflite_generation_equal_keras_greedy(model, greedy):
    # one exported generator with a stop token: prompts that never produce it run to the
    # end, the one that does stops there, as Keras' generation with the same stop token
    stop = _stop_token(greedy([[1, 2, 3]])[0])
    keras_stopping = Generator(model, LENGTH, stop_token_id=stop)
    function = greedy_function(model, LENGTH)
    runner = export.load_tflite(
        export.generator_to_tflite(model, max_length=LENGTH, stop_token_id=stop)
    )
    for prompt in ([1, 2, 3], [1, 2, 3, 4, 5], [6], [8, 9, 10, 11]):
        padded = np.zeros((1, LENGTH), "int32")
        padded[0, : len(prompt)] = prompt
        length = np.array([len(prompt)], "int32")
        np.testing.assert_array_equal(np.asarray(function(padded, length))[0], greedy([prompt])[0])
        tflite = runner.run({"prompt_ids": padded, "prompt_length": length})["token_ids"]
        np.testing.assert_array_equal(np.asarray(tflite)[0], keras_stopping([prompt])[0])


def test_pad_prompts():
    ids, mask = pad_prompts([[4, 5, 6], [7]], 5, pad_id=1)
    np.testing.assert_array_equal(ids, [[4, 5, 6, 1, 1], [7, 1, 1, 1, 1]])
    np.testing.assert_array_equal(mask.sum(axis=1), [3, 1])
    ids, _ = pad_prompts(np.array([2, 3]), 4)  # one prompt as a flat array
    assert ids.shape == (1, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sampler": "nucleus"}, "sampler='nucleus'"),
        ({"temperature": 0}, "temperature=0"),
        ({"top_p": 1.5}, "top_p=1.5"),
        ({"top_k": 0}, "top_k=0"),
        ({"stop_token_id": VOCAB}, "stop_token_id=23"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"use_cache": "yes"}, "use_cache='yes'"),
        ({"use_cache": False, "jit_compile": True}, "jit_compile=True is not allowed"),
    ],
)
def test_generator_rejects_bad_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Generator(model, 16, **kwargs)


def test_generator_rejects_bad_lengths_and_models(model):
    with pytest.raises(ValueError, match=f"max_length=40.*{POSITIONS} positions"):
        Generator(model, 40)
    with pytest.raises(ValueError, match="prompt 1 has 0 tokens"):
        Generator(model, 8)([[1], []])
    with pytest.raises(ValueError, match="prompt 0 has 9 tokens"):
        Generator(model, 8)([list(range(9))])
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="mlp")
    with pytest.raises(ValueError, match="'mlp' is not a kapps GPT"):
        Generator(other, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_heads": 3}, "num_heads=3 does not divide hidden_dim=16"),
        ({"vocab_size": 0}, "vocab_size=0"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"epsilon": 0}, "epsilon=0"),
        ({"activation": "no_such_activation"}, "activation='no_such_activation'"),
    ],
)
def test_gpt_rejects_bad_arguments(kwargs, match):
    config = dict(vocab_size=VOCAB, max_length=8, num_layers=1, num_heads=2, hidden_dim=16,
                  mlp_dim=32)
    config.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gpt(**config)


def test_gpt2_variant_takes_overrides():
    with keras.StatelessScope(initialize_variables=False):
        model = gpt2_small(num_layers=1, vocab_size=100, max_length=16)
    assert model.name == "gpt2_small"
    assert model.count_params() == 100 * 768 + 16 * 768 + 7_087_872 + 2 * 768
