"""kapps.plots: curves and prediction grids written as PNG files."""

import matplotlib
import numpy as np
import pytest
from matplotlib.image import imread

from kapps import plots


def _png(path):
    assert path.stat().st_size > 1000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return imread(path)  # (height, width, 4) floats


def _red_pixels(image):
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return int(np.sum((r > 0.7) & (g < 0.35) & (b < 0.35)))


HISTORY = {
    "loss": [1.0, 0.6, 0.4],
    "accuracy": [0.5, 0.8, 0.9],
    "val_loss": [0.9, 0.7, 0.5],
    "val_accuracy": [0.55, 0.75, 0.85],
    "learning_rate": [0.1, 0.01, 0.001],
}


def test_plot_history_from_dict_and_csv(tmp_path):
    out = plots.plot_history(HISTORY, tmp_path / "curves.png")
    assert out == str(tmp_path / "curves.png")
    image = _png(tmp_path / "curves.png")
    assert image.shape[1] > 800  # three panels side by side: loss, accuracy, learning rate

    csv_path = tmp_path / "history.csv"
    keys = sorted(HISTORY)
    rows = [",".join(["epoch", *keys])]
    rows += [",".join([str(e), *(str(HISTORY[k][e]) for k in keys)]) for e in range(3)]
    csv_path.write_text("\n".join(rows) + "\n")
    plots.plot_history(csv_path, tmp_path / "from_csv.png")
    plots.plot_history(dict(sorted(HISTORY.items())), tmp_path / "sorted.png")  # CSV column order
    np.testing.assert_allclose(_png(tmp_path / "from_csv.png"), _png(tmp_path / "sorted.png"))


def test_plot_history_from_a_history_object(tmp_path):
    class FakeHistory:
        history = {"loss": [0.5, 0.25]}
        epoch = [0, 1]

    out = plots.plot_history(FakeHistory(), tmp_path / "sub" / "curves.png", title="tiny")
    assert out == str(tmp_path / "sub" / "curves.png")
    _png(tmp_path / "sub" / "curves.png")


def test_plot_history_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        plots.plot_history(tmp_path / "missing.csv", tmp_path / "c.png")
    with pytest.raises(ValueError, match="no metric values"):
        plots.plot_history({}, tmp_path / "c.png")
    with pytest.raises(TypeError, match="history.csv"):
        plots.plot_history(42, tmp_path / "c.png")


def test_plot_image_predictions_marks_mistakes_in_red(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(9, 28, 28, 1)).astype("float32") * 0.2  # dark gray digits
    labels = np.arange(9) % 3
    right = plots.plot_image_predictions(images, labels, labels, tmp_path / "right.png")
    scores = np.eye(3)[(labels + 1) % 3]  # every prediction wrong, given as scores
    wrong = plots.plot_image_predictions(
        images, labels, scores, tmp_path / "samples.png", class_names=["zero", "one", "two"]
    )
    right_image, wrong_image = _png(tmp_path / "right.png"), _png(tmp_path / "samples.png")
    assert right == str(tmp_path / "right.png") and wrong == str(tmp_path / "samples.png")
    assert right_image.shape[0] > 200 and right_image.shape[1] > 200
    assert _red_pixels(right_image) == 0
    assert _red_pixels(wrong_image) > 500


def test_plot_image_predictions_rgb_uint8_and_limits(tmp_path):
    images = np.random.default_rng(1).integers(0, 255, size=(50, 16, 16, 3), dtype=np.uint8)
    labels = np.zeros(50, dtype=int)
    plots.plot_image_predictions(images, labels, labels, tmp_path / "rgb.png", max_images=12, columns=6)
    image = _png(tmp_path / "rgb.png")
    assert image.shape[1] > image.shape[0]  # 6 columns x 2 rows: wider than tall
    with pytest.raises(ValueError, match="same length"):
        plots.plot_image_predictions(images, labels[:3], labels, tmp_path / "x.png")


def test_plots_leave_pyplot_alone(tmp_path):
    backend = matplotlib.get_backend()
    plots.plot_history(HISTORY, tmp_path / "c.png")
    assert matplotlib.get_backend() == backend
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_plot_attention_map_overlays_the_map(tmp_path):
    images = np.full((2, 32, 32, 3), 0.5, dtype="float32")  # plain gray
    hot = np.zeros((2, 4, 4))
    hot[:, 0, 0] = 1.0  # all attention on the top-left patch
    out = plots.plot_attention_map(
        images, hot, tmp_path / "attention.png", titles=["cat", "dog"], alpha=0.6, title="rollout"
    )
    assert out == str(tmp_path / "attention.png")
    hot_image = _png(tmp_path / "attention.png")
    assert hot_image.shape[1] > 2 * hot_image.shape[0]  # two (image, overlay) pairs in one row
    plots.plot_attention_map(np.concatenate([images] * 3), np.concatenate([hot] * 3), tmp_path / "six.png")
    six = _png(tmp_path / "six.png")
    assert six.shape[0] > 1.5 * hot_image.shape[0]  # six pairs take two rows of four
    plots.plot_attention_map(images, np.zeros((2, 4, 4)), tmp_path / "none.png")
    uint8 = plots.plot_attention_map((images * 255).astype("uint8")[..., :1], hot, tmp_path / "g.png")
    assert _red_pixels(hot_image) > 100  # the hot patch, in red, on the overlay
    assert _red_pixels(_png(tmp_path / "none.png")) == 0  # a zero map is blue everywhere
    assert uint8 == str(tmp_path / "g.png") and _red_pixels(_png(tmp_path / "g.png")) > 100


def test_plot_attention_map_errors(tmp_path):
    images, maps = np.zeros((2, 8, 8)), np.zeros((2, 2, 2))
    with pytest.raises(ValueError, match="same length"):
        plots.plot_attention_map(images, maps[:1], tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"maps of shape \(2, 4\)"):
        plots.plot_attention_map(images, np.zeros((2, 4)), tmp_path / "a.png")
    with pytest.raises(ValueError, match="alpha=1.5"):
        plots.plot_attention_map(images, maps, tmp_path / "a.png", alpha=1.5)
    with pytest.raises(ValueError, match="titles has 1"):
        plots.plot_attention_map(images, maps, tmp_path / "a.png", titles=["x"])
    with pytest.raises(ValueError, match="no images"):
        plots.plot_attention_map(images[:0], maps[:0], tmp_path / "a.png")


def test_plot_segmentation_marks_mistakes_and_skips_ignored_pixels(tmp_path):
    images = np.full((2, 24, 32, 3), 0.5, dtype="float32")
    masks = np.zeros((2, 24, 32), dtype="int32")
    masks[:, :, 16:] = 1  # classes 0 and 1: blue and orange, never red
    right = plots.plot_segmentation(images, masks, masks, tmp_path / "right.png", class_names=["a", "b"])
    assert right == str(tmp_path / "right.png")
    assert _red_pixels(_png(tmp_path / "right.png")) == 0
    wrong = masks.copy()
    wrong[:, :12] = 2 - wrong[:, :12] * 2  # the top half swapped to class 2 or 0
    plots.plot_segmentation(images, masks, wrong, tmp_path / "wrong.png", title="half wrong")
    assert _red_pixels(_png(tmp_path / "wrong.png")) > 500
    # the same mistakes under the ignored label do not count; scores are reduced by argmax
    ignored = masks.copy()
    ignored[:, :12] = 7
    scores = np.eye(8, dtype="float32")[wrong]
    plots.plot_segmentation(images[..., :1], ignored, scores, tmp_path / "ignored.png", ignore_class=7)
    assert _red_pixels(_png(tmp_path / "ignored.png")) == 0


def test_plot_segmentation_errors(tmp_path):
    images, masks = np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8), dtype="int32")
    with pytest.raises(ValueError, match="same length"):
        plots.plot_segmentation(images, masks[:1], masks, tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"masks \(2, 8, 8\) and predictions \(2, 8, 4\)"):
        plots.plot_segmentation(images, masks, masks[:, :, :4], tmp_path / "a.png")
    with pytest.raises(ValueError, match="alpha=-1"):
        plots.plot_segmentation(images, masks, masks, tmp_path / "a.png", alpha=-1)
    with pytest.raises(ValueError, match="titles has 3"):
        plots.plot_segmentation(images, masks, masks, tmp_path / "a.png", titles=["x"] * 3)
    with pytest.raises(ValueError, match="no images"):
        plots.plot_segmentation(images[:0], masks[:0], masks[:0], tmp_path / "a.png")


def test_segmentation_colours_never_look_like_mistakes():
    colours = np.asarray(plots.SEGMENTATION_COLORS)
    assert not np.any((colours[:, 0] > 0.7) & (colours[:, 1] < 0.35) & (colours[:, 2] < 0.35))
    assert len({tuple(c) for c in colours}) == len(colours)


def test_translation_attention_heatmaps(tmp_path):
    from matplotlib.image import imread

    from kapps.plots import plot_translation_attention

    examples = [
        (["I", "am", "here", "."], ["Je", "suis", "là", ".", "[END]"], np.eye(5, 4)),
        (["Go", "."], ["Va", "!"], np.full((2, 2), 0.5)),
    ]
    path = plot_translation_attention(examples, tmp_path / "a" / "attention.png", title="t")
    image = imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 200
    with pytest.raises(ValueError, match=r"examples\[1\] has weights of shape \(2, 2\)"):
        plot_translation_attention([examples[0], (["Go"], ["Va", "!"], np.ones((2, 2)))], tmp_path / "b.png")
    with pytest.raises(ValueError, match="examples=\\[\\]"):
        plot_translation_attention([], tmp_path / "c.png")


def test_plot_detections_draws_kept_boxes_where_they_are(tmp_path):
    images = np.full((2, 40, 60, 3), 0.5, dtype="float32")
    found = {  # a decode=True output: one real detection per image, one padding row
        "boxes": np.array([[[0.1, 0.1, 0.4, 0.5], [0, 0, 0, 0]]] * 2, "float32"),
        "scores": np.array([[0.9, 0.0], [0.2, 0.0]], "float32"),
        "classes": np.zeros((2, 2), "int32"),
        "num_detections": np.array([1, 1], "int32"),
    }
    red = [(1.0, 0.0, 0.0)]
    path = plots.plot_detections(images[:1], {k: v[:1] for k, v in found.items()}, tmp_path / "one.png", colors=red)
    image = _png(tmp_path / "one.png")
    rows, cols = np.nonzero((image[..., 0] > 0.8) & (image[..., 1] < 0.2) & (image[..., 2] < 0.2))
    assert path == str(tmp_path / "one.png") and len(rows) > 100
    # the box sits in the left half and the upper part of the (only) panel
    assert cols.max() < image.shape[1] * 0.6 and rows.max() < image.shape[0] * 0.7
    # below the score threshold nothing is drawn; a padded ground truth (class -1 rows) is
    truth = np.full((2, 3, 5), -1.0, "float32")
    truth[:, 0] = [0.5, 0.5, 0.9, 0.9, 0]
    plots.plot_detections(images, found, tmp_path / "two.png", ground_truths=truth, colors=red, score_threshold=0.95)
    drawn = _red_pixels(_png(tmp_path / "two.png"))
    plots.plot_detections(images, found, tmp_path / "none.png", colors=red, score_threshold=0.95)
    assert _red_pixels(_png(tmp_path / "none.png")) == 0 < drawn


def test_plot_detections_errors(tmp_path):
    images = np.zeros((2, 8, 8, 3))
    found = [{"boxes": [[0, 0, 1, 1]], "classes": [0], "scores": [1.0]}]
    with pytest.raises(ValueError, match="detections has 1 entries for 2 images"):
        plots.plot_detections(images, found, tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"\(n, m, 5\) padded targets; got an array of shape \(2, 4\)"):
        plots.plot_detections(images, found * 2, tmp_path / "a.png", ground_truths=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="columns=0"):
        plots.plot_detections(images, found * 2, tmp_path / "a.png", columns=0)
    with pytest.raises(ValueError, match="no images"):
        plots.plot_detections(images[:0], [], tmp_path / "a.png")


def test_tile_images_places_every_image_with_padding():
    images = np.stack([np.full((3, 2), v) for v in (0.1, 0.2, 0.3, 0.4, 0.5)])
    mosaic = plots.tile_images(images, columns=2, padding=1, fill=1.0)
    assert mosaic.shape == (3 * 4 - 1, 2 * 3 - 1)
    assert mosaic[0, 0] == pytest.approx(0.1) and mosaic[0, 3] == pytest.approx(0.2)
    assert mosaic[8, 0] == pytest.approx(0.5) and mosaic[8, 3] == 1.0  # the empty sixth cell
    assert mosaic[3, 0] == 1.0  # padding row
    with pytest.raises(ValueError, match="images of shape"):
        plots.tile_images(np.zeros((4, 4)))


def test_sample_grid_latent_map_and_series_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    plots.plot_sample_grid(rng.random((20, 8, 8, 1)), tmp_path / "grid.png", columns=10,
                           title="epoch 1", row_labels=["a", "b"])
    assert _png(tmp_path / "grid.png").shape[0] > 50
    plots.plot_latent_map(rng.normal(size=(50, 2)), rng.integers(0, 10, 50), tmp_path / "map.png")
    _png(tmp_path / "map.png")
    plots.plot_series([10, 50], {"fid": [2.0, 1.0]}, tmp_path / "fid.png", xlabel="steps",
                      ylabel="FID", log_x=True)
    _png(tmp_path / "fid.png")
    with pytest.raises(ValueError, match="row_labels has 3"):
        plots.plot_sample_grid(rng.random((20, 8, 8)), tmp_path / "x.png", columns=10, row_labels=[1, 2, 3])
    with pytest.raises(ValueError, match=r"points of shape \(5, 3\)"):
        plots.plot_latent_map(np.zeros((5, 3)), np.zeros(5), tmp_path / "y.png")
    with pytest.raises(ValueError, match="series 'fid' has 1"):
        plots.plot_series([1, 2], {"fid": [1.0]}, tmp_path / "z.png", xlabel="x", ylabel="y")
