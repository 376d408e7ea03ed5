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
