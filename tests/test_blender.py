"""The Blender scene loader: values, compositing, focal, and one clear error per bad input."""

from __future__ import annotations

import json
import math

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
