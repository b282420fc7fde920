"""The Blender scene loader: values, compositing, focal, and one clear error per bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import shared_data

from camfields import CamfieldsError
from camfields.io.blender import load_blender


def make_scene(root, sizes=((4, 4), (4, 4)), angle=2 * math.atan(0.5)):
    (root / "train").mkdir(parents=True)
    frames = []
    for i, (h, w) in enumerate(sizes):
        rgba = np.zeros((h, w, 4), dtype=np.uint8)
        rgba[..., 0] = 255
        rgba[0, 0, 3] = 255  # one opaque red pixel, the rest transparent
        iio.imwrite(root / "train" / f"r_{i}.png", rgba)
        pose = np.eye(4)
        pose[0, 3] = i
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": pose.tolist()})
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return root


def test_loader_composites_on_the_background_and_reads_poses(tmp_path):
    scene = load_blender(make_scene(tmp_path / "s"), "train", background=(0.0, 0.0, 1.0))
    assert scene.images.shape == (2, 4, 4, 3) and scene.names == ["r_0", "r_1"]
    torch.testing.assert_close(scene.images[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(scene.images[0, 1, 1], torch.tensor([0.0, 0.0, 1.0]))
    assert scene.poses[1, 0, 3] == 1.0 and scene.focal == pytest.approx(4.0)


def test_loader_errors(tmp_path):
    with pytest.raises(CamfieldsError, match="has no transforms_train.json"):
        load_blender(tmp_path, "train")
    root = make_scene(tmp_path / "a")
    meta = json.loads((root / "transforms_train.json").read_text())
    del meta["frames"][1]["transform_matrix"]
    (root / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(CamfieldsError, match="frame 1 has no 'transform_matrix'"):
        load_blender(root, "train")
    (root / "transforms_train.json").write_text(json.dumps({"frames": meta["frames"]}))
    with pytest.raises(CamfieldsError, match="has no 'camera_angle_x'"):
        load_blender(root, "train")
    root = make_scene(tmp_path / "b")
    (root / "train" / "r_1.png").unlink()
    with pytest.raises(CamfieldsError, match=r"frame 1: image ./train/r_1 does not exist"):
        load_blender(root, "train")
    with pytest.raises(CamfieldsError, match="images of mixed sizes: r_0 is 4x4 but r_1 is 6x4"):
        load_blender(make_scene(tmp_path / "c", sizes=((4, 4), (4, 6))), "train")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "transforms_val.json").write_text("{not json")
    with pytest.raises(CamfieldsError, match="is not valid JSON"):
        load_blender(tmp_path / "d", "val")


def test_real_lego_loads_at_quarter_resolution():
    scene = load_blender(shared_data("nerf/lego"), "val", downscale_factor=4)
    assert scene.images.shape == (100, 100, 100, 3)
    assert scene.focal == pytest.approx(0.5 * 100 / math.tan(0.5 * 0.6911112070083618))
    assert 0.0 <= scene.images.min() and scene.images.max() <= 1.0
    assert scene.images[:, 0, 0].mean() > 0.99  # corners are background: white


def edit_meta(root, change):
    """Apply ``change`` to the parsed transforms_train.json of ``root`` and write it back; returns ``root``."""
    path = root / "transforms_train.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return root


def set_frame(key, value, frame=1):
    """A change for ``edit_meta`` that sets ``key`` of one frame."""
    return lambda meta: meta["frames"][frame].__setitem__(key, value)


def set_meta(key, value):
    """A change for ``edit_meta`` that sets a top-level ``key``."""
    return lambda meta: meta.__setitem__(key, value)


def nan_entry(value):
    """A change that puts ``value`` (NaN, inf) into frame 1's transform_matrix."""
    return lambda meta: meta["frames"][1]["transform_matrix"][0].__setitem__(1, value)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            set_frame("transform_matrix", "eye"),
            "frame 1: transform_matrix must be a list of rows of numbers, got 'eye'",
        ),
        (
            set_frame("transform_matrix", [[1, 0, 0, 0], [0, 1, 0], [0, 0, 1, 0]]),
            "frame 1: transform_matrix has rows of different lengths",
        ),
        (
            set_frame("transform_matrix", [[1, 0, 0, "0"]] * 4),
            r"frame 1: transform_matrix\[0\]\[3\] must be a number, got '0'",
        ),
        (set_frame("transform_matrix", [[1, 0, 0]] * 3), "frame 1: transform_matrix must be 4x4 or 3x4, got 3x3"),
        (nan_entry(math.nan), "frame 1: transform_matrix holds NaN or infinite values"),
        (nan_entry(math.inf), "frame 1: transform_matrix holds NaN or infinite values"),
        (nan_entry(10**400), "frame 1: transform_matrix holds NaN or infinite values"),
        (set_frame("file_path", 5), "frame 1: file_path must be a non-empty string, got 5"),
        (set_meta("frames", 5), "'frames' must be a list of frame objects, got 5"),
        (lambda meta: meta["frames"].__setitem__(1, 5), "frame 1 must be an object, got 5"),
        (set_meta("camera_angle_x", 0), r"camera_angle_x must be an angle in \(0, pi\) radians, got 0"),
        (set_meta("camera_angle_x", math.pi), r"camera_angle_x must be an angle in \(0, pi\) radians, got 3.14"),
        (set_meta("camera_angle_x", math.nan), r"camera_angle_x must be an angle in \(0, pi\) radians, got nan"),
        (set_meta("camera_angle_x", "wide"), "camera_angle_x must be a number, got 'wide'"),
        (set_meta("camera_angle_x", True), "camera_angle_x must be a number, got True"),
    ],
    ids=[
        "string matrix",
        "ragged matrix",
        "string entry",
        "3x3 matrix",
        "nan pose",
        "inf pose",
        "pose beyond float32",
        "file_path 5",
        "frames 5",
        "frame 5",
        "fov 0",
        "fov pi",
        "nan fov",
        "fov wide",
        "fov true",
    ],
)
def test_bad_transforms_values_are_one_sentence_naming_the_file_and_frame(tmp_path, change, message):
    root = edit_meta(make_scene(tmp_path / "s"), change)
    with pytest.raises(CamfieldsError, match=rf"transforms_train.json:? {message}"):
        load_blender(root, "train")


def test_a_transforms_file_that_is_not_an_object_is_refused(tmp_path):
    root = make_scene(tmp_path / "s")
    (root / "transforms_train.json").write_text("5")
    with pytest.raises(CamfieldsError, match="transforms_train.json must hold a JSON object"):
        load_blender(root, "train")


def test_a_3x4_transform_matrix_gets_the_row_0_0_0_1(tmp_path):
    root = edit_meta(
        make_scene(tmp_path / "s"), set_frame("transform_matrix", [[1, 0, 0, 5], [0, 1, 0, 6], [0, 0, 1, 7]])
    )
    pose = load_blender(root, "train").poses[1]
    torch.testing.assert_close(pose, torch.tensor([[1.0, 0, 0, 5], [0, 1, 0, 6], [0, 0, 1, 7], [0, 0, 0, 1]]))


@pytest.mark.parametrize("how", ["parent", "climb to the root", "absolute"])
def test_a_file_path_leading_out_of_the_scene_folder_is_refused(tmp_path, how):
    outside = tmp_path / "outside.png"
    iio.imwrite(outside, np.zeros((4, 4, 4), dtype=np.uint8))  # a readable image: only the check stops it
    file_path = {
        "parent": "../outside",
        "climb to the root": "./train/" + "../" * 40 + str(outside).lstrip("/"),
        "absolute": str(outside),
    }[how]
    root = edit_meta(make_scene(tmp_path / "s"), set_frame("file_path", file_path))
    with pytest.raises(CamfieldsError) as error:
        load_blender(root, "train")
    assert str(error.value).startswith(f"transforms_train.json frame 1: file_path {file_path!r} leads outside")


def test_a_file_path_through_dot_dot_that_stays_inside_is_fine(tmp_path):
    root = edit_meta(make_scene(tmp_path / "s"), set_frame("file_path", "./train/../train/r_1"))
    assert load_blender(root, "train").names == ["r_0", "r_1"]


def test_a_scene_folder_given_through_dot_dot_loads(tmp_path, monkeypatch):
    make_scene(tmp_path / "s")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert load_blender(Path("../s"), "train").names == ["r_0", "r_1"]


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_float_image_with_nan_or_inf_pixels_is_refused_naming_the_frame(tmp_path, value):
    root = make_scene(tmp_path / "s")
    pixels = np.full((4, 4, 3), 0.5, dtype=np.float32)
    pixels[2, 1, 0] = value
    iio.imwrite(root / "train" / "r_1.tiff", pixels)  # float TIFF: a format that can hold NaN
    edit_meta(root, set_frame("file_path", "./train/r_1.tiff"))
    with pytest.raises(
        CamfieldsError, match=r"transforms_train.json frame 1: image .*r_1.tiff holds NaN or infinite pixels"
    ):
        load_blender(root, "train")
