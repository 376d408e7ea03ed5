"""The U-Net ISBI 2012 recipe: its quick path on the real slices (exports with the mask model,
tiled whole-slice scoring, pictures) and clear errors for bad flags."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from recipes import unet_isbi2012


def test_quick_run_writes_every_output(data_dir, tmp_path, restore_global_state):
    out = tmp_path / "run"
    metrics = unet_isbi2012.main(
        ["--quick", "--data", str(data_dir / "isbi2012"), "--out", str(out), "--tflite-mask"]
    )
    for name in ("model.keras", "saved_model/saved_model.pb", "model.tflite", "model_int8.tflite",
                 "model_mask.tflite", "metrics.json", "history.csv", "curves.png", "samples.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["val_slices"] == [25] and saved["train_slices"] == [0, 1]
    assert saved["tflite_max_abs_diff"]["tflite"] <= 1e-4
    assert saved["tflite_mask_agreement"] == 1.0
    # Whole 512x512 slices were scored: the float TFLite tile model tiles like Keras.
    assert saved["pixel_error"]["tflite"] == pytest.approx(saved["pixel_error"]["keras"], abs=1e-3)
    assert 0 <= saved["membrane_iou"]["keras"] <= 1
    model = keras.saving.load_model(out / "model.keras")
    assert model.output_shape == (None, 64, 64, 2) and model.count_params() == saved["params"]


def test_grid_tiles_cover_the_slice_with_mirrored_context():
    images = np.arange(2 * 10 * 10, dtype="float32").reshape(2, 10, 10, 1)
    masks = (images[..., 0] % 2).astype("int32")
    # valid-padding geometry: 8-pixel input tiles, 4-pixel output tiles, a 2-pixel border
    tiles, targets = unet_isbi2012._grid_tiles(images, masks, 8, 4, 2)
    assert tiles.shape == (2 * 9, 8, 8, 1) and targets.shape == (2 * 9, 4, 4)  # starts 0, 4, 6
    np.testing.assert_array_equal(tiles[0, 2:6, 2:6, 0], images[0, :4, :4, 0])  # the output tile's input
    np.testing.assert_array_equal(tiles[0, 0, 2:6, 0], images[0, 2, :4, 0])  # mirrored row above
    np.testing.assert_array_equal(targets[-1], masks[1, 6:, 6:])


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--data", "no/such/folder"], "--data='no/such/folder' has no train/image/ folder"),
        (["--tile", "0"], "--tile=0 is not allowed"),
        (["--overlap", "-1"], "--overlap=-1 is not allowed"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, fragment, tmp_path, data_dir):
    if "--data" not in argv:
        argv = [*argv, "--data", str(data_dir / "isbi2012")]
    result = subprocess.run(
        [sys.executable, "-m", "recipes.unet_isbi2012", *argv, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
