"""Pictures recipes write: training curves and predictions.

Figures are drawn with matplotlib's object API on an Agg canvas (``matplotlib.figure.Figure``
plus ``FigureCanvasAgg``), never through ``pyplot``: no global figure state and no backend
switch, so calling these from a notebook or a GUI program changes nothing for the caller.
Importing this module does not import TensorFlow or matplotlib.
"""

from __future__ import annotations

import math
import os

import numpy as np

from kapps.history import read_history

#: Colours for right and wrong predictions.
RIGHT = "#1a7f37"
WRONG = "#d1242f"


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> str:
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _history_dict(history_or_csv) -> dict:
    """``{name: [values]}`` from a History, a dict, or a ``history.csv`` path."""
    if isinstance(history_or_csv, (str, os.PathLike)):
        if not os.path.exists(history_or_csv):
            raise FileNotFoundError(f"history file {os.fspath(history_or_csv)!r} does not exist.")
        return read_history(history_or_csv)
    if hasattr(history_or_csv, "history"):
        history = dict(history_or_csv.history)
        if "epoch" not in history and getattr(history_or_csv, "epoch", None):
            history["epoch"] = list(history_or_csv.epoch)
        return history
    if isinstance(history_or_csv, dict):
        return dict(history_or_csv)
    raise TypeError(
        "history_or_csv must be a keras History, a dict of lists or a path to history.csv; "
        f"got {type(history_or_csv).__name__}."
    )


def plot_history(history_or_csv, path, *, title: str | None = None) -> str:
    """Training curves: one panel per metric, training and validation lines.

    The learning rate, when logged, gets its own panel on a log scale.

    Args:
        history_or_csv: a ``keras.callbacks.History``, a dict ``{name: [values]}``, or the
            path of a ``history.csv`` written by ``CSVLogger`` (``kapps.training.fit``).
        path: the PNG file to write (``curves.png``); parent folders are created.
        title: optional figure title.

    Returns:
        ``path`` as a string.

    Raises:
        FileNotFoundError: a CSV path that does not exist.
        ValueError: the history holds no metric values.
        TypeError: ``history_or_csv`` is of another type.
    """
    from matplotlib.ticker import MaxNLocator

    history = _history_dict(history_or_csv)
    epochs = history.pop("epoch", None)
    names = [k for k in history if not k.startswith("val_") and k not in ("learning_rate", "lr")]
    names += [k[4:] for k in history if k.startswith("val_") and k[4:] not in history]
    lr_key = next((k for k in ("learning_rate", "lr") if k in history), None)
    panels = names + ([lr_key] if lr_key else [])
    if not panels or not any(len(v) for v in history.values()):
        raise ValueError("the history holds no metric values to plot.")

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = _new_figure(4.2 * cols, 3.2 * rows)

    def x_axis(values):
        # Keras counts epochs from 0; people count from 1.
        if epochs and len(epochs) == len(values):
            return [e + 1 for e in epochs]
        return list(range(1, len(values) + 1))

    for i, name in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        if name == lr_key:
            ax.plot(x_axis(history[name]), history[name], marker="o", markersize=3)
            ax.set_yscale("log")
        else:
            for key, label, style in ((name, "train", "-"), (f"val_{name}", "validation", "--")):
                if history.get(key):
                    ax.plot(x_axis(history[key]), history[key], style, marker="o", markersize=3, label=label)
            ax.legend()
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_image_predictions(
    images,
    labels,
    predictions,
    path,
    class_names=None,
    *,
    max_images: int = 36,
    columns: int | None = None,
    title: str | None = None,
) -> str:
    """A grid of images titled with their predicted class; mistakes in red with a red frame.

    Each title reads ``pred`` when right and ``pred (true)`` when wrong.

    Args:
        images: array-like ``(n, height, width)``, ``(n, height, width, 1)`` (shown in gray)
            or ``(n, height, width, 3)``; floats in ``[0, 1]`` or ``uint8``.
        labels: true class indices ``(n,)``.
        predictions: predicted class indices ``(n,)`` or scores ``(n, classes)`` (argmax is
            taken).
        path: the PNG file to write (``samples.png``); parent folders are created.
        class_names: names for the class indices; ``None`` shows the indices.
        max_images: at most this many images are drawn (the first ones).
        columns: grid columns; default: a square-ish grid.
        title: optional figure title; default reports the mistakes among those shown.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: the lengths of ``images``, ``labels`` and ``predictions`` differ, or there
            are no images.
    """
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    predictions = np.asarray(predictions)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    predictions = predictions.reshape(-1)
    if not (len(images) == len(labels) == len(predictions)):
        raise ValueError(
            f"images, labels and predictions must have the same length; got {len(images)}, "
            f"{len(labels)} and {len(predictions)}."
        )
    if len(images) == 0:
        raise ValueError("no images to plot.")
    n = min(len(images), max_images)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)

    def name(index):
        index = int(index)
        return str(class_names[index]) if class_names is not None else str(index)

    fig = _new_figure(1.5 * columns, 1.6 * rows + 0.4)
    mistakes = 0
    for i in range(n):
        ax = fig.add_subplot(rows, columns, i + 1)
        image = images[i]
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        vmax = 255 if image.dtype == np.uint8 else 1.0
        if image.dtype != np.uint8:
            image = np.clip(image.astype(np.float32), 0.0, 1.0)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=vmax)
        right = predictions[i] == labels[i]
        mistakes += not right
        color = RIGHT if right else WRONG
        text = name(predictions[i]) if right else f"{name(predictions[i])} ({name(labels[i])})"
        ax.set_title(text, color=color, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color(color)
            spine.set_linewidth(1 if right else 3)
    fig.suptitle(title or f"{mistakes} mistake(s) in {n} images; red: prediction (true label)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _display_image(image):
    """``(image, cmap, vmax)`` for ``imshow``: gray for one channel, floats clipped to [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype == np.uint8:
        return image, ("gray" if image.ndim == 2 else None), 255
    return np.clip(image.astype(np.float32), 0.0, 1.0), ("gray" if image.ndim == 2 else None), 1.0


def plot_attention_map(images, maps, path, *, titles=None, alpha: float = 0.5,
                       title: str | None = None) -> str:
    """Attention maps over their images: per example, the image, then the map upsampled to
    the image (bilinear) and overlaid in colour (blue: none, red: the most).

    Each map is divided by its maximum (by its range when it has negative values), so the
    colours compare places within one image, not across images. Made for
    ``kapps.models.classification.vit.attention_rollout`` (a ``(batch, grid_h, grid_w)``
    array), but any coarse per-image map works (class activation maps, saliency).

    Args:
        images: array-like ``(n, height, width)``, ``(n, height, width, 1)`` (gray) or
            ``(n, height, width, 3)``; floats in ``[0, 1]`` or ``uint8``.
        maps: ``(n, map_height, map_width)``, any non-negative scale.
        path: the PNG file to write (``attention.png``); parent folders are created.
        titles: optional ``n`` titles, one per example (e.g. the predicted class).
        alpha: opacity of the map over the image, in ``[0, 1]``.
        title: optional figure title.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: no images, lengths that differ, maps that are not 2-D per example,
            ``alpha`` outside ``[0, 1]``, or a number of titles that differs from the images.
    """
    images = np.asarray(images)
    maps = np.asarray(maps, dtype=np.float64)
    if len(images) == 0:
        raise ValueError("no images to plot.")
    if maps.ndim != 3:
        raise ValueError(
            f"maps of shape {maps.shape} are not allowed; expected (n, map_height, map_width)."
        )
    if len(images) != len(maps):
        raise ValueError(
            f"images and maps must have the same length; got {len(images)} and {len(maps)}."
        )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha!r} is not allowed; expected a number in [0, 1].")
    if titles is not None and len(titles) != len(images):
        raise ValueError(
            f"titles has {len(titles)} entries for {len(images)} images; expected one per image."
        )
    n = len(images)
    # Pairs (image, overlay) side by side, up to four pairs per row.
    pairs_per_row = min(n, 4)
    rows = -(-n // pairs_per_row)
    fig = _new_figure(2.5 * 2 * pairs_per_row, 2.6 * rows + (0.5 if title else 0.0))
    for i in range(n):
        image, cmap, vmax = _display_image(images[i])
        height, width = image.shape[:2]
        low = min(0.0, float(maps[i].min()))
        span = float(maps[i].max()) - low
        scaled = (maps[i] - low) / span if span > 0 else np.zeros_like(maps[i])
        left = fig.add_subplot(rows, 2 * pairs_per_row, 2 * i + 1)
        left.imshow(image, cmap=cmap, vmin=0, vmax=vmax)
        right = fig.add_subplot(rows, 2 * pairs_per_row, 2 * i + 2)
        right.imshow(image, cmap=cmap, vmin=0, vmax=vmax)
        # the coarse map stretched over the whole image: extent = (left, right, bottom, top)
        right.imshow(scaled, cmap="jet", vmin=0.0, vmax=1.0, alpha=float(alpha),
                     interpolation="bilinear", extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        if titles is not None:
            left.set_title(str(titles[i]), fontsize=9)
        right.set_title("attention", fontsize=9)
        for ax in (left, right):
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


#: Class colours for masks (RGB in [0, 1]); class ``i`` takes ``SEGMENTATION_COLORS[i % 20]``.
#: Matplotlib's tab20 with its reds replaced, so no class looks like the red of the mistakes.
SEGMENTATION_COLORS = (
    (0.12, 0.47, 0.71), (1.00, 0.50, 0.05), (0.17, 0.63, 0.17), (0.00, 0.40, 0.40),
    (0.58, 0.40, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50),
    (0.74, 0.74, 0.13), (0.09, 0.75, 0.81), (0.68, 0.78, 0.91), (1.00, 0.73, 0.47),
    (0.60, 0.87, 0.54), (0.40, 0.40, 0.00), (0.77, 0.69, 0.84), (0.77, 0.61, 0.58),
    (0.97, 0.71, 0.82), (0.78, 0.78, 0.78), (0.86, 0.86, 0.55), (0.62, 0.85, 0.90),
)


def _colour_mask(mask, colors, ignore_class):
    """``(height, width, 4)`` RGBA: class colours, transparent where ``ignore_class``."""
    mask = np.asarray(mask).astype(np.int64)
    table = np.asarray(colors, dtype=np.float32)
    rgba = np.ones((*mask.shape, 4), dtype=np.float32)
    rgba[..., :3] = table[mask % len(table)]
    if ignore_class is not None:
        rgba[mask == ignore_class, 3] = 0.0
    return rgba


def plot_segmentation(
    images,
    masks,
    predictions,
    path,
    *,
    class_names=None,
    colors=None,
    ignore_class=None,
    alpha: float = 0.55,
    titles=None,
    title: str | None = None,
) -> str:
    """Segmentations over their images: one row per example with the image, the true mask
    over it, the predicted mask over it and the mistakes (red where the prediction differs
    from the truth; pixels of ``ignore_class`` are never counted), with a colour legend.

    Args:
        images: array-like ``(n, height, width)``, ``(n, height, width, 1)`` (gray) or
            ``(n, height, width, 3)``; floats in ``[0, 1]`` or ``uint8``.
        masks: true class indices ``(n, height, width)``.
        predictions: predicted class indices ``(n, height, width)``, or scores
            ``(n, height, width, classes)`` (argmax is taken; one channel is cut at 0.5).
        path: the PNG file to write (``samples.png``); parent folders are created.
        class_names: names for the legend, in class order (``None``: no legend).
        colors: RGB triples in ``[0, 1]``, one per class (default ``SEGMENTATION_COLORS``).
        ignore_class: a label drawn transparent and left out of the mistakes (CamVid's void).
        alpha: opacity of the masks over the image, in ``[0, 1]``.
        titles: optional ``n`` titles, one per example (shown over the image).
        title: optional figure title.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: no images, lengths or sizes that differ, ``alpha`` outside ``[0, 1]``, or
            a number of titles that differs from the images.
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    predictions = np.asarray(predictions)
    if predictions.ndim == 4:
        predictions = (
            (predictions[..., 0] > 0.5).astype(np.int64) if predictions.shape[-1] == 1
            else predictions.argmax(axis=-1)
        )
    if len(images) == 0:
        raise ValueError("no images to plot.")
    if not (len(images) == len(masks) == len(predictions)):
        raise ValueError(
            f"images, masks and predictions must have the same length; got {len(images)}, "
            f"{len(masks)} and {len(predictions)}."
        )
    if masks.ndim != 3 or masks.shape != predictions.shape or masks.shape[1:] != images.shape[1:3]:
        raise ValueError(
            f"masks {masks.shape} and predictions {predictions.shape} must both be "
            f"(n, height, width) with the images' height and width {images.shape[1:3]}."
        )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha!r} is not allowed; expected a number in [0, 1].")
    if titles is not None and len(titles) != len(images):
        raise ValueError(
            f"titles has {len(titles)} entries for {len(images)} images; expected one per image."
        )
    colors = SEGMENTATION_COLORS if colors is None else colors
    n = len(images)
    height, width = masks.shape[1:]
    panel = 2.6 * width / max(height, width)
    legend_rows = 0 if class_names is None else -(-len(class_names) // 6)
    row = 2.6 * height / max(height, width) + 0.35  # the panel and its title
    fig = _new_figure(4 * panel + 0.4, n * row + 0.4 * legend_rows + (0.5 if title else 0.2))
    for i in range(n):
        image, cmap, vmax = _display_image(images[i])
        valid = masks[i] != ignore_class if ignore_class is not None else np.ones_like(masks[i], bool)
        wrong = (masks[i] != predictions[i]) & valid
        accuracy = 1.0 - wrong.sum() / max(valid.sum(), 1)
        panels = (
            (str(titles[i]) if titles is not None else "image", None),
            ("truth", _colour_mask(masks[i], colors, ignore_class)),
            (f"prediction ({100 * accuracy:.1f}% right)", _colour_mask(predictions[i], colors, None)),
            (f"mistakes ({wrong.sum()} px)", np.concatenate(
                [np.broadcast_to(np.array([0.84, 0.14, 0.18], np.float32), (*wrong.shape, 3)),
                 wrong[..., None].astype(np.float32)], axis=-1)),
        )
        for j, (label, overlay) in enumerate(panels):
            ax = fig.add_subplot(n, 4, 4 * i + j + 1)
            ax.imshow(image, cmap=cmap, vmin=0, vmax=vmax)
            if overlay is not None:
                ax.imshow(overlay, alpha=float(alpha) if j < 3 else 0.9, interpolation="nearest")
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    if class_names is not None:
        from matplotlib.patches import Patch

        handles = [Patch(color=colors[k % len(colors)], label=str(name)) for k, name in enumerate(class_names)]
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 * legend_rows, 1, 1))
    return _save(fig, path)


def plot_translation_attention(examples, path, *, columns: int = 2,
                               title: str | None = None) -> str:
    """Attention heatmaps of translated sentences, one panel per sentence: source tokens
    along the bottom, produced target tokens down the side, darker where a target token
    attended more (Bahdanau et al. 2015, Figure 3).

    Args:
        examples: a list of ``(source_tokens, target_tokens, weights)``: token strings and a
            ``(len(target_tokens), len(source_tokens))`` array of weights (each row one
            decoding step, e.g. from ``greedy_search(..., return_attention=True)`` cut to the
            real tokens).
        path: the PNG file to write; parent folders are created.
        columns: panels per row.
        title: optional figure title.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: no examples, or weights whose shape does not match the tokens.
    """
    if not examples:
        raise ValueError("examples=[] is not allowed; expected at least one sentence.")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns={columns!r} is not allowed; expected an int >= 1.")
    checked = []
    for number, (source, target, weights) in enumerate(examples):
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(target), len(source)):
            raise ValueError(
                f"examples[{number}] has weights of shape {weights.shape} for "
                f"{len(target)} target and {len(source)} source tokens; expected "
                f"({len(target)}, {len(source)})."
            )
        checked.append((list(source), list(target), weights))
    columns = min(columns, len(checked))
    rows = math.ceil(len(checked) / columns)
    widest = max(len(s) for s, _, _ in checked)
    tallest = max(len(t) for _, t, _ in checked)
    panel_w, panel_h = 1.2 + 0.38 * widest, 1.2 + 0.32 * tallest
    fig = _new_figure(panel_w * columns, panel_h * rows + (0.4 if title else 0))
    for index, (source, target, weights) in enumerate(checked):
        ax = fig.add_subplot(rows, columns, index + 1)
        ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=max(weights.max(), 1e-9),
                  aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(source)), source, rotation=90, fontsize=8)
        ax.set_yticks(range(len(target)), target, fontsize=8)
        ax.tick_params(length=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_detections(
    images,
    detections,
    path,
    *,
    ground_truths=None,
    class_names=None,
    colors=None,
    score_threshold: float = 0.0,
    titles=None,
    title: str | None = None,
    columns: int = 2,
) -> str:
    """Detected boxes over their images, beside the ground truth: predictions are solid
    boxes labelled with class and score, ground-truth boxes dashed, both coloured by class.

    Args:
        images: array-like ``(n, height, width, 3)`` (or gray), floats in ``[0, 1]`` or
            ``uint8``.
        detections: ``n`` dicts with ``"boxes"`` ``(k, 4)`` in ``rel_xyxy`` (fractions of the
            width and height), ``"classes"`` ``(k,)`` and ``"scores"`` ``(k,)``; or the batched
            output of a ``decode=True`` detector (a dict of arrays with ``"num_detections"``),
            whose padding rows are left out.
        path: the PNG file to write; parent folders are created.
        ground_truths: optional ``n`` dicts with ``"boxes"`` ``(m, 4)`` (``rel_xyxy``) and
            ``"classes"``, or a padded ``(n, m, 5)`` array of ``(x_min, y_min, x_max, y_max,
            class)`` whose padding rows have class -1 (the training targets).
        class_names: names shown on the labels and in the legend (``None``: class numbers).
        colors: RGB triples in ``[0, 1]``, one per class (default ``SEGMENTATION_COLORS``).
        score_threshold: predictions scoring below it are not drawn.
        titles: optional ``n`` titles, one per image.
        title: optional figure title.
        columns: images per row.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: no images, a number of detections, ground truths or titles that differs
            from the images, or ``columns`` below 1.
    """
    images = np.asarray(images)
    if len(images) == 0:
        raise ValueError("no images to plot.")
    detections = _detection_list(detections, "detections")
    truths = None if ground_truths is None else _detection_list(ground_truths, "ground_truths")
    for name, value in (("detections", detections), ("ground_truths", truths), ("titles", titles)):
        if value is not None and len(value) != len(images):
            raise ValueError(f"{name} has {len(value)} entries for {len(images)} images; expected one per image.")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns={columns!r} is not allowed; expected a positive integer.")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    colors = SEGMENTATION_COLORS[1:] if colors is None else colors
    name_of = (lambda k: str(class_names[k])) if class_names is not None else str
    n = len(images)
    columns = min(columns, n)
    rows = -(-n // columns)
    height, width = images.shape[1:3]
    panel = 4.0
    fig = _new_figure(columns * panel, rows * (panel * height / width + 0.35) + 0.3 + (0.3 if title else 0))
    for i in range(n):
        ax = fig.add_subplot(rows, columns, i + 1)
        image, cmap, vmax = _display_image(images[i])
        ax.imshow(image, cmap=cmap, vmin=0, vmax=vmax)
        layers = [(truths[i], True)] if truths else []
        for found, dashed in layers + [(detections[i], False)]:
            for box, cls, score in zip(found["boxes"], found["classes"], found["scores"]):
                if not dashed and score < score_threshold:
                    continue
                x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
                color = colors[int(cls) % len(colors)]
                ax.add_patch(Rectangle(
                    (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color,
                    linewidth=0.9 if dashed else 1.4, linestyle="--" if dashed else "-",
                ))
                if not dashed:
                    ax.text(x0, y0, f"{name_of(int(cls))} {score:.2f}", color="white", fontsize=5,
                            va="bottom", bbox={"facecolor": color, "edgecolor": "none", "pad": 0.5, "alpha": 0.8})
        shown = int(np.sum(np.asarray(detections[i]["scores"]) >= score_threshold))
        label = str(titles[i]) if titles is not None else f"{shown} detections"
        if truths:
            label += f", {len(truths[i]['boxes'])} true boxes"
        ax.set_title(label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], color="0.3", linestyle="-", label="prediction")]
    if truths:
        handles.append(Line2D([], [], color="0.3", linestyle="--", label="ground truth"))
    if class_names is not None:
        handles += [Line2D([], [], color=colors[k % len(colors)], linewidth=3, label=str(name))
                    for k, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _save(fig, path)


def _detection_list(value, name):
    """Per-image ``{"boxes", "classes", "scores"}`` NumPy dicts from a list of dicts, a
    batched ``decode=True`` output (cut at ``num_detections``) or padded ``(n, m, 5)``
    targets (rows with class -1 dropped; scores 1)."""
    if isinstance(value, dict):
        counts = np.asarray(value["num_detections"]).reshape(-1)
        return [
            {key: np.asarray(value[key][i])[: counts[i]] for key in ("boxes", "classes", "scores")}
            for i in range(len(counts))
        ]
    if not isinstance(value, (list, tuple)):
        array = np.asarray(value)
        if array.ndim != 3 or array.shape[-1] != 5:
            raise ValueError(
                f"{name} must be a list of dicts, a decode=True output dict or (n, m, 5) padded "
                f"targets; got an array of shape {array.shape}."
            )
        keep = array[..., 4] >= 0
        return [
            {"boxes": a[k, :4], "classes": a[k, 4].astype(np.int64), "scores": np.ones(int(k.sum()))}
            for a, k in zip(array, keep)
        ]
    out = []
    for item in value:
        boxes = np.asarray(item["boxes"], np.float64).reshape(-1, 4)
        scores = item.get("scores")
        out.append({
            "boxes": boxes,
            "classes": np.asarray(item["classes"]).reshape(-1),
            "scores": np.ones(len(boxes)) if scores is None else np.asarray(scores).reshape(-1),
        })
    return out


def tile_images(images, columns: int | None = None, *, padding: int = 1, fill: float = 1.0):
    """One mosaic of ``images`` ``(n, height, width[, channels])`` in ``[0, 1]``: ``columns``
    per row (default a square-ish grid), ``padding`` pixels of ``fill`` between them.

    Returns:
        A float32 array ``(rows * (height + padding) - padding, columns * (width + padding)
        - padding[, channels])``.

    Raises:
        ValueError: no images, or not ``(n, height, width[, channels])``.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(
            f"images of shape {images.shape} are not allowed; expected (n, height, width) or "
            "(n, height, width, channels) with n >= 1."
        )
    n, height, width = images.shape[:3]
    columns = min(columns or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / columns)
    shape = (rows * (height + padding) - padding, columns * (width + padding) - padding, *images.shape[3:])
    mosaic = np.full(shape, fill, dtype=np.float32)
    for i, image in enumerate(np.clip(images, 0.0, 1.0)):
        top, left = (i // columns) * (height + padding), (i % columns) * (width + padding)
        mosaic[top:top + height, left:left + width] = image
    return mosaic


def plot_sample_grid(images, path, *, columns: int | None = None, title: str | None = None,
                     row_labels=None, scale: float = 0.5) -> str:
    """A grid of generated images (or an interpolation strip: one row per pair), drawn as one
    mosaic.

    Args:
        images: ``(n, height, width[, channels])`` floats in ``[0, 1]`` (clipped).
        path: the PNG file to write; parent folders are created.
        columns: images per row; default a square-ish grid.
        title: figure title.
        row_labels: optional text per row, drawn on the left (e.g. the class of a
            class-conditional row, or ``"7 -> 1"`` for an interpolation).
        scale: inches per image.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: see :func:`tile_images`; ``row_labels`` of the wrong length.
    """
    images = np.asarray(images)
    mosaic = tile_images(images, columns)
    n = len(images)
    columns = min(columns or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / columns)
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"row_labels has {len(row_labels)} entries; expected one per row ({rows}).")
    fig = _new_figure(max(scale * columns, 2.0) + (0.6 if row_labels is not None else 0.0),
                      max(scale * rows, 0.8) + (0.4 if title else 0.1))
    ax = fig.add_axes([0.1 if row_labels is not None else 0.01, 0.01,
                       0.89 if row_labels is not None else 0.98, 0.88 if title else 0.98])
    gray = mosaic.ndim == 2
    ax.imshow(mosaic, cmap="gray" if gray else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    if row_labels is not None:
        height = images.shape[1] + 1
        ax.set_yticks([r * height + (height - 1) / 2 for r in range(rows)])
        ax.set_yticklabels([str(label) for label in row_labels], fontsize=8)
    else:
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_latent_map(points, labels, path, *, title: str | None = None, class_names=None,
                    axis_labels=("latent 1", "latent 2")) -> str:
    """A 2-D map of encoded examples, one colour per class (a VAE's latent means, or their
    first two principal components).

    Args:
        points: ``(n, 2)`` coordinates.
        labels: ``(n,)`` class indices.
        path: the PNG file to write.
        title: figure title.
        class_names: legend names for the class indices; default the indices.
        axis_labels: the two axis titles.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: ``points`` is not ``(n, 2)`` or ``labels`` has another length.
    """
    points = np.asarray(points, dtype=np.float32)
    labels = np.asarray(labels).reshape(-1)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(
            f"points of shape {points.shape} and labels of shape {labels.shape} are not allowed; "
            "expected (n, 2) and (n,)."
        )
    from matplotlib import colormaps

    colors = colormaps["tab10"]
    fig = _new_figure(6.0, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    for k in np.unique(labels):
        chosen = labels == k
        name = class_names[int(k)] if class_names is not None else str(int(k))
        ax.scatter(points[chosen, 0], points[chosen, 1], s=3, alpha=0.6, color=colors(int(k) % 10), label=name)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.legend(markerscale=4, fontsize=8, loc="best", ncol=2)
    ax.set_title(title or "latent map", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_series(x, series, path, *, xlabel: str, ylabel: str, title: str | None = None,
                log_x: bool = False) -> str:
    """Lines of ``{name: values}`` against ``x`` with markers (e.g. sample quality against the
    number of sampling steps).

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: a series whose length differs from ``x``'s.
    """
    x = list(x)
    fig = _new_figure(5.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for name, values in series.items():
        values = list(values)
        if len(values) != len(x):
            raise ValueError(f"series {name!r} has {len(values)} values; expected {len(x)}, one per x.")
        ax.plot(x, values, marker="o", label=name)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
