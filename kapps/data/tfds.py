"""TensorFlow Datasets sources, with one clear error when the data is not there.

``tfds.load`` on a machine without the prepared data either fails with an ``AssertionError``
("could not find data") or, with ``download=True`` and no network, sits in download retries.
``load_tfds`` checks the prepared dataset on disk first and raises one
:class:`~kapps.data.errors.DatasetNotFoundError` or
:class:`~kapps.data.errors.DatasetCorruptError` that says where it looked and what to do.

Where the data is looked for, first match wins:

1. the ``data_dir`` argument (recipes pass their ``--tfds-data-dir`` flag),
2. the standard ``TFDS_DATA_DIR`` environment variable,
3. TFDS' default, ``~/tensorflow_datasets``.
"""

from __future__ import annotations

import difflib
import os
import socket
import threading

from kapps.data.errors import DatasetCorruptError, DatasetNotFoundError

#: Host probed before a download: TFDS fetches most datasets (and every prepared copy on
#: ``gs://tfds-data``) from Google Cloud Storage.
_PROBE_HOST = ("storage.googleapis.com", 443)


def tfds_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """The directory TFDS datasets are read from (and prepared into).

    Args:
        data_dir: an explicit directory; ``None`` falls back to ``$TFDS_DATA_DIR`` and then to
            ``~/tensorflow_datasets``.

    Returns:
        The directory as an absolute path string (``~`` expanded).
    """
    chosen = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.abspath(os.path.expanduser(os.fspath(chosen)))


def load_tfds(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    as_supervised: bool = True,
    shuffle_files: bool = False,
    with_info: bool = False,
    read_config=None,
):
    """Load a TFDS dataset split, failing early and clearly when it is missing or damaged.

    Args:
        name: TFDS name, optionally with config and version (``"mnist"``, ``"mnist:3.0.1"``).
        split: TFDS split expression (``"train"``, ``"test"``, ``"train[:90%]"``).
        data_dir: directory holding prepared datasets; see :func:`tfds_data_dir`.
        download: when the data is not prepared, download and prepare it (needs internet).
            The network is probed first, so an offline machine fails at once instead of
            retrying.
        as_supervised: return ``(input, label)`` tuples instead of feature dicts.
        shuffle_files: shuffle the order of the shard files (TFDS option).
        with_info: also return the ``tfds.core.DatasetInfo``.
        read_config: an optional ``tfds.ReadConfig`` (e.g. to seed file shuffling).

    Returns:
        A ``tf.data.Dataset``, or ``(dataset, info)`` when ``with_info`` is true.

    Raises:
        ValueError: ``name`` is not a TFDS dataset (the message lists close names).
        DatasetNotFoundError: the dataset is not prepared under the data directory and
            ``download`` is false or the network is unreachable. The message names the
            directory and the ways to prepare the data.
        DatasetCorruptError: the dataset's directory exists but its metadata cannot be read or
            shard files are missing or truncated.
    """
    import tensorflow_datasets as tfds  # ~0.4 s; only paid by code that reads TFDS data

    root = tfds_data_dir(data_dir)
    prepared = _check_prepared(tfds, name, root)
    if not prepared:
        if not download:
            raise DatasetNotFoundError(_not_found_message(name, root, reason="download=False"))
        if not _network_reachable():
            raise DatasetNotFoundError(
                _not_found_message(name, root, reason=f"no network: cannot reach {_PROBE_HOST[0]}")
            )
    try:
        return tfds.load(
            name,
            split=split,
            data_dir=root,
            download=not prepared,
            as_supervised=as_supervised,
            shuffle_files=shuffle_files,
            with_info=with_info,
            read_config=read_config,
        )
    except (ValueError, KeyError, TypeError):
        raise  # argument problems (an unknown split, ...): TFDS' own message is clear
    except Exception as err:
        if prepared:
            raise DatasetCorruptError(
                f"TFDS dataset {name!r} in {root} could not be read: {err}. "
                f"Delete {os.path.join(root, name.split(':')[0])} and prepare it again "
                f"(tfds build {name} --data_dir {root})."
            ) from err
        raise DatasetNotFoundError(
            _not_found_message(name, root, reason=f"download failed: {err}")
        ) from err


def _check_prepared(tfds, name: str, root: str) -> bool:
    """True when ``name`` is fully prepared under ``root``; False when it is absent.

    Raises ``DatasetCorruptError`` when it is present but damaged, ``ValueError`` for an
    unknown name.
    """
    try:
        builder = tfds.builder(name, data_dir=root)
    except tfds.core.DatasetNotFoundError:
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name.split(":")[0].split("/")[0], known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"name={name!r} is not a TensorFlow Datasets dataset.{hint}") from None
    except Exception as err:  # garbled dataset_info.json / features.json
        raise DatasetCorruptError(
            f"TFDS dataset {name!r} in {root} has unreadable metadata ({err}). Delete the "
            f"dataset's folder there and prepare it again (tfds build {name} --data_dir {root})."
        ) from err

    version_dir = os.fspath(builder.data_dir)  # root/name[/config]/version
    if not builder.is_prepared():
        if os.path.isdir(version_dir) and os.listdir(version_dir):
            raise DatasetCorruptError(
                f"TFDS dataset {name!r}: {version_dir} exists but has no dataset_info.json "
                f"(an interrupted preparation?). Delete it and prepare the data again "
                f"(tfds build {name} --data_dir {root})."
            )
        return False

    problems = []
    for split_name, split_info in builder.info.splits.items():
        paths = [os.fspath(p) for p in split_info.filepaths]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            problems.append(f"split {split_name!r} is missing {len(missing)} shard(s), e.g. {missing[0]}")
            continue
        if str(builder.info.file_format).lower().endswith("tfrecord") and int(split_info.num_bytes):
            # A TFRecord stores each serialized example with 16 bytes of framing (length,
            # two CRCs), so a complete split is exactly that much larger than num_bytes.
            expected = int(split_info.num_bytes) + 16 * int(split_info.num_examples)
            actual = sum(os.path.getsize(p) for p in paths)
            if actual < expected:
                problems.append(
                    f"split {split_name!r} shards hold {actual} bytes, expected {expected} (truncated)"
                )
    if problems:
        raise DatasetCorruptError(
            f"TFDS dataset {name!r} in {version_dir} is incomplete: {'; '.join(problems)}. "
            f"Delete {version_dir} and prepare it again (tfds build {name} --data_dir {root}), "
            "or copy it again from a machine that has it."
        )
    return True


def _not_found_message(name: str, root: str, reason: str) -> str:
    base = name.split(":")[0]
    return (
        f"TFDS dataset {name!r} is not prepared in {root} (looked for "
        f"{os.path.join(root, base)}/<version>/dataset_info.json; {reason}).\n"
        "Prepare it in one of these ways:\n"
        f"  - on this machine, with internet: tfds build {base} --data_dir {root}\n"
        "    (or call load_tfds with download=True);\n"
        f"  - on a machine with internet: tfds build {base} --data_dir DIR, then copy "
        f"DIR/{base} to {os.path.join(root, base)};\n"
        "  - point kapps at a directory that already has it: --tfds-data-dir DIR or "
        "TFDS_DATA_DIR=DIR."
    )


def _network_reachable(address=_PROBE_HOST, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``address`` opens within ``timeout`` seconds.

    Run in a thread because name resolution ignores socket timeouts on some systems.
    """
    result = []

    def probe():
        try:
            socket.create_connection(address, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(result and result[0])
