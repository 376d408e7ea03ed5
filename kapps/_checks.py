"""Argument checks shared by layers and builders: each raises ValueError naming the argument,
the value received and what is allowed."""


def check_positive_int(name, value):
    """Raise unless ``value`` is an int >= 1 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed; expected a positive integer.")
    return value


def check_choice(name, value, allowed):
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not allowed; expected one of {shown}.")
    return value


def check_rate(name, value):
    """Raise unless ``0 <= value < 1`` (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name}={value!r} is not allowed; expected a number in [0, 1).")
    return float(value)


def check_int_sequence(name, value, length):
    """Raise unless ``value`` is a sequence of ``length`` positive ints; return it as a tuple."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != length
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise ValueError(
            f"{name}={value!r} is not allowed; expected {length} positive integers."
        )
    return tuple(value)


def check_image_shape(name, value, *, allow_unknown_size=True, note=""):
    """Raise unless ``value`` is ``(height, width, channels)`` of positive ints (height and
    width may be None when ``allow_unknown_size``); return it as a tuple. ``note`` is added
    to the message (why sizes must be known, say)."""
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 3
        or value[2] is None
        or any(
            (d is not None or not allow_unknown_size)
            and (isinstance(d, bool) or not isinstance(d, int) or d < 1)
            for d in value
        )
    ):
        sizes = "; height and width may be None" if allow_unknown_size else ""
        raise ValueError(
            f"{name}={value!r} is not allowed; expected (height, width, channels) of positive "
            f"integers (channels last{sizes}){note}."
        )
    return tuple(value)


def check_transformer_dims(hidden_dim, depth, num_heads, mlp_dim):
    """Raise unless the Transformer sizes are positive ints and ``num_heads`` divides
    ``hidden_dim``."""
    for name, value in (("hidden_dim", hidden_dim), ("depth", depth), ("num_heads", num_heads), ("mlp_dim", mlp_dim)):
        check_positive_int(name, value)
    if hidden_dim % num_heads:
        raise ValueError(
            f"num_heads={num_heads!r} does not divide hidden_dim={hidden_dim!r}; each head gets "
            "hidden_dim / num_heads features."
        )


def check_bool(name, value):
    """Raise unless ``value`` is True or False; return it."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not allowed; expected True or False.")
    return value


def check_epsilon(value, name="epsilon"):
    """Raise unless ``value`` is a number > 0; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name}={value!r} is not allowed; expected a number > 0.")
    return float(value)


def check_name(name):
    """Raise unless ``name`` (a model name) is a non-empty string; return it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; expected a non-empty string.")
    return name
