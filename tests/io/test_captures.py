"""Real-capture loaders (LLFF, nerfstudio) and the loader choice: one scene written in three formats
loads to the same rays and images; the every-8th split; images_<k>; one sentence per refusal."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import shared_data
from test_nerf import ring_poses

from camfields import CamfieldsError
from camfields.io.blender import load_blender
from camfields.io.images import downscale
from camfields.io.llff import load_llff
from camfields.io.nerfstudio import load_transforms
from camfields.io.scenes import load_scene, scene_loader
from camfields.render import camera_rays
from camfields.tasks.nerf import NERF, NeRFConfig

VIEWS, SIZE, FOCAL = 16, 8, 10.0


def scene(views: int = VIEWS, size: int = SIZE) -> tuple[torch.Tensor, np.ndarray]:
    """OpenGL camera-to-world poses (V, 4, 4) on a ring looking at the origin and RGB images (V, size, size, 3)."""
    images = np.random.default_rng(0).integers(0, 256, (views, size, size, 3), dtype=np.uint8)
    return ring_poses(views), images


def write_images(folder, images: np.ndarray) -> list[str]:
    folder.mkdir(parents=True)
    names = [f"v_{k:02d}.png" for k in range(len(images))]
    for name, image in zip(names, images):
        iio.imwrite(folder / name, image)
    return names


def write_blender(root, poses, images, focal: float = FOCAL) -> None:
    """The views as a Blender scene: every 8th in transforms_val.json, the rest in transforms_train.json."""
    names = write_images(root / "images", images)
    angle = 2 * math.atan(0.5 * images.shape[2] / focal)
    for split, keep in (("train", lambda k: k % 8 != 0), ("val", lambda k: k % 8 == 0)):
        frames = [
            {"file_path": f"images/{names[k]}", "transform_matrix": poses[k].tolist()}
            for k in range(len(names))
            if keep(k)
        ]
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))


def llff_rows(poses, height: int, width: int, focal: float) -> np.ndarray:
    """poses_bounds rows (V, 17): the OpenGL poses in LLFF's [down, right, back] columns, hwf and bounds 1, 6."""
    right, up, back, centre = (poses[:, :3, c].numpy().astype(np.float64) for c in range(4))
    hwf = np.broadcast_to([height, width, focal], right.shape)
    matrix = np.stack([-up, right, back, centre, hwf], axis=2)  # (V, 3, 5)
    bounds = np.broadcast_to([1.0, 6.0], (len(poses), 2))
    return np.concatenate([matrix.reshape(len(poses), 15), bounds], axis=1)


def write_llff(root, poses, images, focal: float = FOCAL):
    write_images(root / "images", images)
    np.save(root / "poses_bounds.npy", llff_rows(poses, images.shape[1], images.shape[2], focal))
    return root


def write_nerfstudio(root, poses, images, focal: float = FOCAL, frame_extra=None, **top):
    """The views as a transforms.json, in reverse order (the loader sorts them by file_path): view k is frame
    V - 1 - k of the file, the first training view (v_01) frame V - 2; ``frame_extra`` maps frames to their
    extra keys."""
    names = write_images(root / "images", images)
    height, width = images.shape[1:3]
    meta = {"camera_model": "OPENCV", "fl_x": focal, "fl_y": focal, "cx": width / 2, "cy": height / 2}
    meta |= {"w": width, "h": height, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0} | top
    frames = [{"file_path": f"images/{name}", "transform_matrix": pose.tolist()} for name, pose in zip(names, poses)]
    meta["frames"] = frames[::-1]
    for number, extra in (frame_extra or {}).items():
        meta["frames"][number] |= extra
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def refused(pattern_parts, load, *args):
    """The one-line message of the CamfieldsError that ``load(*args)`` raises; it holds every part."""
    with pytest.raises(CamfieldsError) as caught:
        load(*args)
    message = str(caught.value)
    assert "\n" not in message
    for part in pattern_parts:
        assert part in message, (part, message)
    return message


def test_the_same_scene_in_three_formats_gives_the_same_rays_and_images(tmp_path):
    poses, images = scene()
    for name, write in (("blender", write_blender), ("llff", write_llff), ("ns", write_nerfstudio)):
        (tmp_path / name).mkdir()
        write(tmp_path / name, poses, images)
    for split in ("train", "val"):
        blender = load_blender(tmp_path / "blender", split)
        for other in (load_llff(tmp_path / "llff", split), load_transforms(tmp_path / "ns", split)):
            assert other.names == blender.names
            assert torch.equal(other.images, blender.images)
            assert other.focal == pytest.approx(blender.focal, rel=1e-6)
            torch.testing.assert_close(other.poses, blender.poses, atol=1e-6, rtol=0)
            for mine, theirs in zip(other.poses, blender.poses):
                for a, b in zip(
                    camera_rays(mine, SIZE, SIZE, other.focal), camera_rays(theirs, SIZE, SIZE, blender.focal)
                ):
                    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # the images are the files as written, the poses the ring's OpenGL cameras
    val = load_llff(tmp_path / "llff", "val")
    assert torch.equal(val.images, torch.from_numpy(images[[0, 8]]).float() / 255)
    torch.testing.assert_close(val.poses, poses[[0, 8]], atol=1e-6, rtol=0)
    assert val.focal == pytest.approx(FOCAL)


@pytest.mark.parametrize("write, load", [(write_llff, load_llff), (write_nerfstudio, load_transforms)])
def test_every_eighth_view_is_held_out(tmp_path, write, load):
    poses, images = scene(views=17)
    write(tmp_path, poses, images)
    held_out = ["v_00", "v_08", "v_16"]
    assert load(tmp_path, "val").names == held_out and load(tmp_path, "test").names == held_out
    train = load(tmp_path, "train").names
    assert len(train) == 14 and not set(train) & set(held_out)
    refused(["unknown split 'extra'"], load, tmp_path, "extra")


def test_llff_downscale_reads_images_k_or_averages_images(tmp_path):
    poses, images = scene(views=3, size=16)
    write_llff(tmp_path, poses, images)
    averaged = load_llff(tmp_path, "train", 2)
    expected = downscale(torch.from_numpy(images[1]).float() / 255, 2)
    assert averaged.images.shape == (2, 8, 8, 3) and averaged.focal == pytest.approx(FOCAL / 2)
    torch.testing.assert_close(averaged.images[0], expected, atol=1 / 255, rtol=0)
    small = np.full((3, 8, 8, 3), 7, dtype=np.uint8)  # not the average: shows which folder was read
    write_images(tmp_path / "images_2", small)
    ready = load_llff(tmp_path, "train", 2)
    assert torch.equal(ready.images, torch.full((2, 8, 8, 3), 7 / 255))
    assert ready.focal == pytest.approx(FOCAL / 2)
    assert load_llff(tmp_path, "train", 4).images.shape[1:3] == (4, 4)  # no images_4: averaged


def test_nerfstudio_downscale_scales_the_focal(tmp_path):
    poses, images = scene(views=3, size=16)
    write_nerfstudio(tmp_path, poses, images, focal=12.0)
    half = load_transforms(tmp_path, "train", 2)
    assert half.images.shape == (2, 8, 8, 3) and half.focal == pytest.approx(6.0)


def test_llff_refusals_name_the_file_and_frame(tmp_path):
    poses, images = scene(views=4)
    root = write_llff(tmp_path / "s", poses, images)
    path = root / "poses_bounds.npy"
    rows = np.load(path)
    refused([f"{tmp_path} has no poses_bounds.npy"], load_llff, tmp_path, "train")
    np.save(path, rows[:, :15])
    refused([str(path), "(N, 17)", "(4, 15)"], load_llff, root, "train")
    bad = rows.copy()
    bad[2, 3] = np.nan
    np.save(path, bad)
    refused([str(path), "frame 2", "NaN"], load_llff, root, "train")
    bad = rows.copy()
    bad[1, 15:] = [3.0, 2.0]
    np.save(path, bad)
    refused([str(path), "frame 1", "0 < near < far"], load_llff, root, "train")
    bad = rows.copy()
    bad[3, 14] = 11.0
    np.save(path, bad)
    refused([str(path), "frame 3", "one camera"], load_llff, root, "train")
    np.save(path, rows[:3])
    refused([str(root / "images"), "4 images", "3 poses"], load_llff, root, "train")
    np.save(path, llff_rows(poses, SIZE, 2 * SIZE, FOCAL))
    refused([str(root / "images"), "8x8", "16x8", "another shape"], load_llff, root, "train")
    np.save(path, rows)
    (root / "images" / "v_01.png").write_bytes(b"not a png")
    refused([str(root / "images" / "v_01.png"), "frame 1"], load_llff, root, "train")
    for image in (root / "images").iterdir():
        image.unlink()
    (root / "images").rmdir()
    refused([f"{root} has no images/ folder"], load_llff, root, "train")
    path.write_bytes(b"garbage")
    refused([str(path), "not a readable .npy"], load_llff, root, "train")


def test_llff_forward_facing_recentres_on_the_average_pose_and_refuses_opposed_cameras(tmp_path):
    _, images = scene(views=4)
    poses = ring_poses(32)[:4]  # neighbours on a ring: they face about the same way
    root = write_llff(tmp_path / "s", poses, images)
    everything = torch.cat(
        [load_llff(root, "val", forward_facing=True).poses, load_llff(root, "train", forward_facing=True).poses]
    )
    # bounds 1 and 6: the translations shrink by 1 / (1 * 0.75); the average camera is at the origin looking down -z
    torch.testing.assert_close(everything[:, :3, 3].mean(dim=0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(everything[:, :3, 2].sum(dim=0), torch.tensor([0.0, 0, 1]) * everything[:, 2, 2].sum())
    spread = poses[:, :3, 3] - poses[:, :3, 3].mean(dim=0)
    torch.testing.assert_close(
        everything[:, :3, 3].norm(dim=-1).sort().values, (spread.norm(dim=-1) / 0.75).sort().values
    )
    opposed = poses.clone()
    opposed[2:, :3, :3] = opposed[:2, :3, :3] * torch.tensor([-1.0, 1, -1])  # half of them look the other way
    np.save(root / "poses_bounds.npy", llff_rows(opposed, SIZE, SIZE, FOCAL))
    refused(
        [str(root / "poses_bounds.npy"), "no average viewing direction"], load_llff, root, "train", 1, (1, 1, 1), True
    )


@pytest.mark.parametrize(
    "top, extra, parts",
    [
        ({"fl_y": FOCAL * 1.006}, None, ["frame 14", "fl_x 10", "fl_y 10.06", "0.5 %"]),
        ({"cx": SIZE / 2 + 0.6}, None, ["frame 14", "principal point (4.6, 4)", "0.5 px"]),
        ({"cy": SIZE / 2 - 0.6}, None, ["frame 14", "principal point (4, 3.4)"]),
        ({"k1": 0.01}, None, ["frame 14", "distortion k1 = 0.01", "undistort"]),
        ({}, {3: {"p2": -0.002}}, ["frame 3", "distortion p2 = -0.002"]),
        ({"camera_model": "OPENCV_FISHEYE"}, None, ["frame 14", "camera_model 'OPENCV_FISHEYE' is not supported"]),
        ({"w": 16}, None, ["frame 14", "the image is 8x8 but its w is 16"]),
        ({"fl_x": None, "fl_y": None}, None, ["frame 14 has no focal length"]),
        ({}, {4: {"file_path": "images/v_11/../../../outside.png"}}, ["frame 4", "leads outside the scene folder"]),
        ({}, {5: {"transform_matrix": [[1, 0, 0]]}}, ["frame 5", "transform_matrix must be 4x4 or 3x4"]),
        ({}, {6: {"transform_matrix": [[float("nan")] * 4] * 4}}, ["frame 6", "NaN"]),
    ],
)
def test_nerfstudio_refuses_what_the_rays_cannot_represent(tmp_path, top, extra, parts):
    poses, images = scene()
    write_nerfstudio(tmp_path, poses, images, frame_extra=extra, **top)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta = {key: value for key, value in meta.items() if value is not None}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    refused(["transforms.json", *parts], load_transforms, tmp_path, "train")


def test_nerfstudio_accepts_small_intrinsic_differences_and_instant_ngp_angles(tmp_path):
    poses, images = scene()
    write_nerfstudio(tmp_path, poses, images, fl_y=FOCAL * 1.004, cx=SIZE / 2 + 0.4, cy=SIZE / 2 - 0.4)
    assert load_transforms(tmp_path, "val").focal == pytest.approx(FOCAL * 1.002)
    angle = 2 * math.atan(0.5 * SIZE / FOCAL)
    write_nerfstudio(tmp_path / "ngp", poses, images, fl_x=None, fl_y=None, camera_angle_x=angle)
    meta = json.loads((tmp_path / "ngp" / "transforms.json").read_text())
    del meta["fl_x"], meta["fl_y"], meta["camera_model"]
    (tmp_path / "ngp" / "transforms.json").write_text(json.dumps(meta))
    assert load_transforms(tmp_path / "ngp", "val").focal == pytest.approx(FOCAL)


def test_nerfstudio_file_refusals(tmp_path):
    refused([f"{tmp_path} has no transforms.json"], load_transforms, tmp_path, "train")
    (tmp_path / "transforms.json").write_text("{oops")
    refused(["transforms.json is not valid JSON"], load_transforms, tmp_path, "train")
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": []}))
    refused(["transforms.json must list its frames"], load_transforms, tmp_path, "train")


def test_the_loader_is_picked_by_what_the_folder_holds(tmp_path):
    poses, images = scene()
    for name, write in (("blender", write_blender), ("llff", write_llff), ("ns", write_nerfstudio)):
        (tmp_path / name).mkdir()
        write(tmp_path / name, poses, images)
    assert scene_loader(tmp_path / "blender") is load_blender
    assert scene_loader(tmp_path / "llff") is load_llff
    assert scene_loader(tmp_path / "ns") is load_transforms
    (tmp_path / "llff" / "transforms.json").write_text((tmp_path / "ns" / "transforms.json").read_text())
    assert scene_loader(tmp_path / "llff") is load_transforms  # transforms.json comes before poses_bounds.npy
    assert load_scene(tmp_path / "ns", "val").names == ["v_00", "v_08"]
    (tmp_path / "empty").mkdir()
    message = refused(
        ["transforms_train.json (Blender)", "poses_bounds.npy (LLFF)", "transforms.json (nerfstudio"],
        load_scene,
        tmp_path / "empty",
        "train",
    )
    assert message.startswith(f"{tmp_path / 'empty'} holds no scene")
    refused([f"scene folder {tmp_path / 'missing'} does not exist"], load_scene, tmp_path / "missing", "train")
    # fit nerf --data reads any of the three
    assert NERF.loader is load_scene and "LLFF" in NERF.what and "nerfstudio" in NERF.what
    data = NERF.load(NeRFConfig(downscale=1), tmp_path / "llff")
    assert data.train.names == load_llff(tmp_path / "llff", "train").names and len(data.eval.names) == 2


def test_the_real_bird_capture_loads(tmp_path):
    root = shared_data("real/bird")
    val = load_llff(root, "val", 8)
    assert val.images.shape == (23, 120, 68, 3) and val.names[:2] == ["001", "009"]
    recorded = np.load(root / "poses_bounds.npy")
    assert val.focal == pytest.approx(recorded[0, 14] * 68 / 544)
    # the camera's viewing axis (-z) is LLFF's -back column, its up (+y) LLFF's -down
    torch.testing.assert_close(val.poses[0, :3, 2].double(), torch.from_numpy(recorded[0, 2:15:5]), atol=1e-6, rtol=0)
    torch.testing.assert_close(val.poses[0, :3, 1].double(), -torch.from_numpy(recorded[0, 0:15:5]), atol=1e-6, rtol=0)
