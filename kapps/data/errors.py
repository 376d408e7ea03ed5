"""Errors raised by ``kapps.data`` when input data is missing or damaged.

Each error carries one message that says where kapps looked and what to do next, so a recipe
can let it reach the user unchanged.
"""


class DatasetNotFoundError(FileNotFoundError):
    """The requested data is not on disk (and could not be downloaded)."""


class DatasetCorruptError(OSError):
    """The data directory exists but cannot be read as the dataset it claims to be."""
