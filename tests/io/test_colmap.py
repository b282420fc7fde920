"""The COLMAP reader: one scene written as a COLMAP model (text and binary) and as a nerfstudio
transforms.json gives the same images and rays; sorting, the every-8th split, images_<k>; the camera
models read; one sentence per refusal, forged counts included."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from conftest import shared_data
from test_captures import refused, write_images, write_llff, write_nerfstudio
from test_nerf import ring_poses

from camfields.io.colmap import MODEL_IDS, load_colmap, opengl_pose, read_model
from camfields.io.llff import load_llff
from camfields.io.nerfstudio import load_transforms
from camfields.io.scenes import scene_loader
from camfields.render import camera_rays
from camfields.tasks.radiance import View, split_rays

VIEWS, HEIGHT, WIDTH, FOCAL = 9, 6, 8, 10.0
PINHOLE = ("PINHOLE", [FOCAL, FOCAL, WIDTH / 2, HEIGHT / 2])


def scene(views: int = VIEWS, height: int = HEIGHT, width: int = WIDTH) -> tuple[torch.Tensor, np.ndarray]:
    """OpenGL camera-to-world poses (V, 4, 4) on a ring looking at the origin and RGB images (V, H, W, 3)."""
    images = np.random.default_rng(1).integers(0, 256, (views, height, width, 3), dtype=np.uint8)
    return ring_poses(views), images


def quaternion(rotation: np.ndarray) -> np.ndarray:
    """The unit quaternion (w, x, y, z) of a rotation matrix (3, 3), by its largest component."""
    m = rotation
    w, x, y, z = (
        np.sqrt(max(0.0, 1 + s0 * m[0, 0] + s1 * m[1, 1] + s2 * m[2, 2])) / 2
        for s0, s1, s2 in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))
    )
    big = int(np.argmax([w, x, y, z]))
    if big == 0:
        q = [w, (m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w), (m[1, 0] - m[0, 1]) / (4 * w)]
    elif big == 1:
        q = [(m[2, 1] - m[1, 2]) / (4 * x), x, (m[0, 1] + m[1, 0]) / (4 * x), (m[0, 2] + m[2, 0]) / (4 * x)]
    elif big == 2:
        q = [(m[0, 2] - m[2, 0]) / (4 * y), (m[0, 1] + m[1, 0]) / (4 * y), y, (m[1, 2] + m[2, 1]) / (4 * y)]
    else:
        q = [(m[1, 0] - m[0, 1]) / (4 * z), (m[0, 2] + m[2, 0]) / (4 * z), (m[1, 2] + m[2, 1]) / (4 * z), z]
    return np.array(q)


def colmap_images(poses: torch.Tensor, names: list[str]) -> list[tuple]:
    """(image id, qvec, tvec, camera id, name) per view: the OpenGL camera-to-world poses as COLMAP's
    world-to-camera transforms in OpenCV axes, with ids in reverse name order (the loader sorts by name)."""
    rows = []
    for k, (pose, name) in enumerate(zip(poses.double().numpy(), names)):
        opencv = pose[:3, :3] * [1.0, -1.0, -1.0]  # columns right, down, forward
        rotation = opencv.T
        rows.append((len(names) - k, quaternion(rotation), -rotation @ pose[:3, 3], 1, name))
    return rows[::-1]


def write_model(folder, cameras: list[tuple], images: list[tuple], binary: bool) -> None:
    """A COLMAP model in ``folder``: cameras (id, model, width, height, params), images (id, qvec, tvec,
    camera id, name), with one 2D point per image and an empty points3D file."""
    folder.mkdir(parents=True, exist_ok=True)
    if binary:
        data = struct.pack("<Q", len(cameras))
        for camera_id, model, width, height, params in cameras:
            data += struct.pack(f"<iiQQ{len(params)}d", camera_id, MODEL_IDS[model], width, height, *params)
        (folder / "cameras.bin").write_bytes(data)
        data = struct.pack("<Q", len(images))
        for image_id, qvec, tvec, camera_id, name in images:
            data += struct.pack("<i7di", image_id, *qvec, *tvec, camera_id) + name.encode() + b"\0"
            data += struct.pack("<Q", 1) + struct.pack("<ddq", 1.5, 2.5, -1)
        (folder / "images.bin").write_bytes(data)
        (folder / "points3D.bin").write_bytes(struct.pack("<Q", 0))
        return
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    lines += [
        " ".join(map(repr, (i, m, w, h))).replace("'", "") + " " + " ".join(map(repr, p)) for i, m, w, h, p in cameras
    ]
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list with two lines of data per image:"]
    for image_id, qvec, tvec, camera_id, name in images:
        lines += [
            " ".join(map(repr, (image_id, *map(float, qvec), *map(float, tvec), camera_id))) + f" {name}",
            "1.5 2.5 -1",
        ]
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    (folder / "points3D.txt").write_text("# 3D point list\n")


def write_colmap(root, poses, images, binary: bool, camera=PINHOLE, folder: str = "sparse/0"):
    """The views as a COLMAP capture: images/ and a model with one camera in ``root``/``folder``."""
    names = write_images(root / "images", images)
    model, params = camera
    write_model(
        root / folder, [(1, model, images.shape[2], images.shape[1], params)], colmap_images(poses, names), binary
    )
    return root


def test_text_binary_and_nerfstudio_give_the_same_images_and_rays(tmp_path):
    poses, images = scene()
    write_colmap(tmp_path / "txt", poses, images, binary=False)
    write_colmap(tmp_path / "bin", poses, images, binary=True)
    write_nerfstudio(tmp_path / "ns", poses, images)
    for split, names in (("train", [f"v_{k:02d}" for k in range(1, 8)]), ("val", ["v_00", "v_08"])):
        ns = load_transforms(tmp_path / "ns", split)
        for root in ("txt", "bin"):
            colmap = load_colmap(tmp_path / root, split)
            assert colmap.names == ns.names == names
            assert torch.equal(colmap.images, ns.images)
            assert colmap.focal == pytest.approx(FOCAL)
            for mine, theirs in zip(colmap.poses, ns.poses):
                for a, b in zip(
                    camera_rays(mine, HEIGHT, WIDTH, colmap.focal), camera_rays(theirs, HEIGHT, WIDTH, FOCAL)
                ):
                    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # the poses are the ring's OpenGL cameras, the images the files as written
    val = load_colmap(tmp_path / "bin", "val")
    torch.testing.assert_close(val.poses, poses[[0, 8]], atol=1e-6, rtol=0)
    assert torch.equal(val.images, torch.from_numpy(images[[0, 8]]).float() / 255)


@pytest.mark.parametrize(
    "camera",
    [
        ("SIMPLE_PINHOLE", [FOCAL, WIDTH / 2, HEIGHT / 2]),
        ("SIMPLE_RADIAL", [FOCAL, WIDTH / 2, HEIGHT / 2, 0.0]),
        ("RADIAL", [FOCAL, WIDTH / 2, HEIGHT / 2, 0.0, 0.0]),
        ("OPENCV", [FOCAL, FOCAL * 1.004, WIDTH / 2 + 0.4, HEIGHT / 2 - 0.4, 0.0, 0.0, 0.0, 0.0]),
    ],
)
@pytest.mark.parametrize("binary", [False, True])
def test_undistorted_camera_models_load(tmp_path, camera, binary):
    poses, images = scene()
    write_colmap(tmp_path, poses, images, binary, camera, folder="sparse")
    assert scene_loader(tmp_path) is load_colmap
    val = load_colmap(tmp_path, "val")
    assert val.focal == pytest.approx(0.5 * (camera[1][0] + camera[1][1]) if camera[0] == "OPENCV" else FOCAL)
    torch.testing.assert_close(val.poses, poses[[0, 8]], atol=1e-6, rtol=0)


def test_unregistered_photos_are_ignored_and_downscale_reads_images_k(tmp_path):
    poses, images = scene(height=12, width=16)
    write_colmap(tmp_path, poses, images, binary=True, camera=("PINHOLE", [FOCAL, FOCAL, 8.0, 6.0]))
    write_images(tmp_path / "images" / "extra", images[:1])  # not a photo of the model: never read
    (tmp_path / "images" / "z_unregistered.png").write_bytes((tmp_path / "images" / "v_00.png").read_bytes())
    averaged = load_colmap(tmp_path, "train", 2)
    assert averaged.images.shape == (7, 6, 8, 3) and averaged.focal == pytest.approx(FOCAL / 2)
    small = np.full((VIEWS, 6, 8, 3), 7, dtype=np.uint8)  # not the average: shows which folder was read
    write_images(tmp_path / "images_2", small)
    ready = load_colmap(tmp_path, "train", 2)
    assert torch.equal(ready.images, torch.full((7, 6, 8, 3), 7 / 255)) and ready.focal == pytest.approx(FOCAL / 2)
    write_images(tmp_path / "images_3", small)
    refused(["v_01.png", "the image is 8x6 but its camera is 16x12 / 3"], load_colmap, tmp_path, "train", 3)


def forge_binary(root) -> dict[str, bytes]:
    """The bytes of the binary model of a written capture, by file name."""
    return {name: (root / "sparse/0" / name).read_bytes() for name in ("cameras.bin", "images.bin")}


@pytest.mark.parametrize(
    "forge, parts",
    [
        (
            lambda b: {"cameras.bin": struct.pack("<Q", 10**6) + b["cameras.bin"][8:]},
            ["cameras.bin ends at byte", "1000000 cameras"],
        ),
        (
            lambda b: {"images.bin": struct.pack("<Q", 2**63) + b["images.bin"][8:]},
            ["images.bin ends", "9223372036854775808 images"],
        ),
        (lambda b: {"images.bin": b["images.bin"][:-30]}, ["images.bin ends", "2D points of image 8"]),
        (lambda b: {"images.bin": b["images.bin"][:-1]}, ["images.bin ends", "image 8"]),
        (lambda b: {"images.bin": b["images.bin"] + b"\0"}, ["images.bin has 1 bytes after its last image"]),
        (
            lambda b: {"cameras.bin": b["cameras.bin"][:12] + struct.pack("<i", 5) + b["cameras.bin"][16:]},
            ["camera 0", "camera model OPENCV_FISHEYE is not supported"],
        ),
        (
            lambda b: {"cameras.bin": b["cameras.bin"][:12] + struct.pack("<i", 99) + b["cameras.bin"][16:]},
            ["camera 0", "camera model id 99"],
        ),
        (
            lambda b: {"images.bin": b["images.bin"][:12] + struct.pack("<d", float("nan")) + b["images.bin"][20:]},
            ["image", "NaN"],
        ),
    ],
)
def test_forged_binary_models_are_refused_in_one_sentence(tmp_path, forge, parts):
    poses, images = scene()
    write_colmap(tmp_path, poses, images, binary=True)
    for name, data in forge(forge_binary(tmp_path)).items():
        (tmp_path / "sparse/0" / name).write_bytes(data)
    refused(parts, load_colmap, tmp_path, "val")


@pytest.mark.parametrize(
    "camera, parts",
    [
        (("OPENCV", [FOCAL, FOCAL, 4.0, 3.0, 0.01, 0.0, 0.0, 0.0]), ["camera 1", "distortion k1 = 0.01", "undistort"]),
        (("SIMPLE_RADIAL", [FOCAL, 4.0, 3.0, -0.2]), ["distortion k = -0.2"]),
        (("PINHOLE", [FOCAL, FOCAL * 1.006, 4.0, 3.0]), ["fl_x 10", "fl_y 10.06", "0.5 %"]),
        (("PINHOLE", [FOCAL, FOCAL, 4.6, 3.0]), ["principal point (4.6, 3)", "0.5 px"]),
        (("PINHOLE", [FOCAL, FOCAL, 4.0, float("nan")]), ["principal point (4, nan)"]),
        (("PINHOLE", [-FOCAL, -FOCAL, 4.0, 3.0]), ["positive finite"]),
        (
            ("OPENCV_FISHEYE", [FOCAL, FOCAL, 4.0, 3.0, 0.0, 0.0, 0.0, 0.0]),
            ["line 3", "OPENCV_FISHEYE is not supported"],
        ),
        (("PINHOLE", [FOCAL, FOCAL, 4.0]), ["line 3", "a PINHOLE camera has 4 parameters, got 3"]),
    ],
)
def test_cameras_the_rays_cannot_represent_are_refused(tmp_path, camera, parts):
    poses, images = scene()
    write_colmap(tmp_path, poses, images, binary=False, camera=camera)
    where = "cameras.txt line 3" if "line 3" in parts else "sparse/0 image 'v_01.png' (camera 1)"
    refused([where, *parts], load_colmap, tmp_path, "train")


def test_file_and_text_refusals(tmp_path):
    poses, images = scene()
    refused([f"{tmp_path} has no sparse/0/cameras.bin"], load_colmap, tmp_path, "train")
    root = write_colmap(tmp_path / "s", poses, images, binary=False)
    model = root / "sparse/0"
    text = (model / "images.txt").read_text()
    (model / "images.txt").write_text(text.replace(" 1 v_03.png", " 7 v_03.png"))
    refused(["v_03.png", "camera 7 is not in the model's cameras"], load_colmap, root, "train")
    (model / "images.txt").write_text(text.replace("v_03.png", "v_03b.png"))
    refused(["sparse/0 image 'v_03b.png'", "image v_03b.png does not exist"], load_colmap, root, "train")
    (model / "images.txt").write_text(text.replace("v_05.png", "v_05/../../outside.png"))
    refused(["leads outside the scene folder"], load_colmap, root, "train")
    lines = text.splitlines()
    (model / "images.txt").write_text("\n".join(lines[:3] + lines[1:3] + lines[3:]) + "\n")
    refused(["images.txt line 4", "image id 1 appears twice"], load_colmap, root, "train")
    (model / "images.txt").write_text("\n".join(line for line in lines if line != "1.5 2.5 -1") + "\n")
    refused(
        ["images.txt line 3 must hold the 2D points of the image on line 2", "two lines"], load_colmap, root, "train"
    )
    (model / "images.txt").write_text(text.replace(" 1 v_03.png", " one v_03.png"))
    refused(["images.txt line", "is not 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'"], load_colmap, root, "train")
    (model / "images.txt").write_text("# no images\n")
    refused(["the model registers no images"], load_colmap, root, "train")
    fields = lines[1].split()
    (model / "images.txt").write_text(text.replace(lines[1], " ".join(fields[:5] + ["nan"] + fields[6:])))
    refused(["image 'v_08.png'", "the pose (qvec, tvec) holds NaN"], load_colmap, root, "val")
    (model / "images.txt").unlink()
    refused([f"{model} has no images.bin or images.txt"], load_colmap, root, "train")
    (model / "images.txt").write_text(text)
    (model / "cameras.txt").write_text("1 PINHOLE 8 six 10 10 4 3\n")
    refused(["cameras.txt line 1", "is not 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'"], load_colmap, root, "train")
    (model / "cameras.txt").write_text("1 PINHOLE 16 12 10 10 8 6\n")
    refused(["the image is 8x6 but its camera is 16x12"], load_colmap, root, "train")


def test_the_loader_is_picked_before_llff_and_after_the_other_formats(tmp_path):
    poses, images = scene()
    write_llff(tmp_path, poses, images)
    assert scene_loader(tmp_path) is load_llff
    names = sorted(path.name for path in (tmp_path / "images").iterdir())
    write_model(
        tmp_path / "sparse/0", [(1, *PINHOLE[:1], WIDTH, HEIGHT, PINHOLE[1])], colmap_images(poses, names), True
    )
    assert scene_loader(tmp_path) is load_colmap  # the model keeps each photo's focal; poses_bounds.npy one
    write_nerfstudio(tmp_path / "ns", poses, images)
    (tmp_path / "transforms.json").write_text((tmp_path / "ns" / "transforms.json").read_text())
    assert scene_loader(tmp_path) is load_transforms
    (tmp_path / "empty" / "sparse").mkdir(parents=True)
    refused(["sparse/0/cameras.* or sparse/cameras.* (COLMAP)"], scene_loader, tmp_path / "empty")


def test_photos_of_different_focal_lengths_keep_each_their_own_in_both_formats(tmp_path):
    """Zoomed photos: one COLMAP camera per photo and per-frame fl_x / fl_y in transforms.json give
    the same per-view focals, and every view's rays (training rays and evaluation views) use its own."""
    poses, images = scene()
    focals = [FOCAL * (1 + 0.1 * k) for k in range(VIEWS)]
    names = write_images(tmp_path / "images", images)
    cameras = [(k + 1, "PINHOLE", WIDTH, HEIGHT, [f, f, WIDTH / 2, HEIGHT / 2]) for k, f in enumerate(focals)]
    rows = [
        (i, q, t, VIEWS - i + 1, n) for i, q, t, _, n in colmap_images(poses, names)
    ]  # view k: id VIEWS - k, camera k + 1
    write_model(tmp_path / "sparse/0", cameras, rows, binary=True)
    write_nerfstudio(
        tmp_path / "ns",
        poses,
        images,
        frame_extra={VIEWS - 1 - k: {"fl_x": f, "fl_y": f} for k, f in enumerate(focals)},
    )
    colmap, ns = load_colmap(tmp_path, "train"), load_transforms(tmp_path / "ns", "train")
    train = [k for k in range(VIEWS) if k % 8]
    for split in (colmap, ns):
        torch.testing.assert_close(split.focals, torch.tensor([focals[k] for k in train]))
        assert split.focal == pytest.approx(sum(focals[k] for k in train) / len(train))
    rays = split_rays(colmap, torch.device("cpu"))
    for row, k in enumerate(train):
        expected = camera_rays(poses[k], HEIGHT, WIDTH, focals[k])
        got = rays.directions[row * HEIGHT * WIDTH : (row + 1) * HEIGHT * WIDTH]
        torch.testing.assert_close(got, expected[1], atol=1e-5, rtol=0)
        assert View.of(colmap, row).focal == pytest.approx(focals[k])
    # focals within 0.5 % of their mean are one camera: no per-view focals
    write_nerfstudio(tmp_path / "one", poses, images, frame_extra={3: {"fl_x": FOCAL * 1.004, "fl_y": FOCAL * 1.004}})
    assert load_transforms(tmp_path / "one", "train").focals is None


def test_the_real_bird_model_gives_the_llff_poses_and_each_photo_its_focal():
    root = shared_data("real/bird")
    cameras, views = read_model(root / "sparse/0")
    assert len(cameras) == len(views) == 184
    # poses_bounds.npy was made from this model: the same cameras, in name order
    order = sorted(views.values(), key=lambda view: view.name)
    poses = torch.stack([opengl_pose(view, view.name) for view in order[::8]])
    llff = load_llff(root, "val", 8)
    torch.testing.assert_close(poses, llff.poses, atol=1e-5, rtol=0)
    # one camera per photo, focals 793 to 1037 px: each view keeps its own, scaled to the loaded width
    colmap = load_colmap(root, "val", 8)
    torch.testing.assert_close(colmap.poses, llff.poses, atol=1e-5, rtol=0)
    expected = [cameras[view.camera_id].params["f"] * colmap.images.shape[2] / 544 for view in order[::8]]
    torch.testing.assert_close(colmap.focals, torch.tensor(expected, dtype=torch.float32), atol=1e-3, rtol=0)
    assert float(colmap.focals.max() / colmap.focals.min()) > 1.1
