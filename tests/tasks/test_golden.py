"""Golden fits: one tiny fit per task, seeded, on the CPU, whose metrics are recorded here.

They pin today's behaviour before the task layer is refactored (issue 33: "every task fitted
with the same seed and config gives the same metrics before and after"). A change that moves
a number on purpose updates it here, in its own commit, saying why. The tolerance allows for
another CPU's summation order, not for a different computation.
"""

from __future__ import annotations

import pytest
import torch
from test_dynamic import SMALL_KPLANES, write_npz
from test_nerf import write_blender_scene
from test_video import SMALL, synthetic_clip, write_frames_folder

from camfields.tasks import dynamic, image, nerf, video
from camfields.tasks.image import fit_images

#: relative tolerance of a recorded metric
RTOL = 1e-4

#: the metrics recorded at 2973f75 (2-core AMD EPYC, torch 2.14.1)
GOLDEN = {
    # at 34eb742: the image presets' schedule spans 2000 steps (issue 34), so this 12-step fit no longer
    # decays at steps 6 and 9 (it was 13.044014930725098 dB, SSIM 0.38549575209617615)
    "image": {"psnr": 17.36859130859375, "ssim": 0.7644497752189636, "params": 269827},
    "nerf": {
        "psnr": 15.426498413085938,
        "ssim": 0.40149131417274475,
        # at the scene codec (issue 29) psnr_8bit is read from the decoded scene.camf (symmetric levels,
        # bfloat16 steps), no longer from min-max levels in memory (it was 15.424936771392822)
        "psnr_8bit": 15.427802085876465,
        "params": 12563859,
    },
    "dynamic": {
        "psnr": 13.057902812957764,
        "ssim": 0.06421405076980591,
        "psnr_8bit": 13.058640003204346,  # scene.camf, as above (was 13.056333065032959)
        "params": 20212,
    },
    "video": {
        "psnr": 10.491725206375122,
        "psnr_float": 10.48862338066101,
        "ms_ssim": 0.17870226129889488,
        "bytes": 30603,
        "params": 33686,
    },
}

TINY_SCENE = {
    "aabb": [-1.0, -1, -1, 1, 1, 1],
    "turntable_frames": 0,
    "sampler": {"steps_per_diagonal": 32, "grid_resolution": 8, "warmup": 4, "update_every": 4},
    "train": {"steps": 12, "batch_size": 128, "lr": 1e-2},
}


def fit(task: str, tmp_path) -> dict:
    torch.manual_seed(7)  # a global seed unlike the recording run's: the fits must seed themselves
    if task == "image":
        cfg = image.resolve_config("cam", overrides={"downscale": 16, "train": {"steps": 12}})
        return fit_images(None, cfg, tmp_path / "run", "cpu", progress=False)
    if task == "nerf":
        write_blender_scene(tmp_path / "sphere")
        cfg = nerf.resolve_config("ngp_cam", overrides={**TINY_SCENE, "downscale": 1})
        return nerf.fit_nerf(tmp_path / "sphere", cfg, tmp_path / "run", "cpu", progress=False)
    if task == "dynamic":
        path = write_npz(tmp_path / "ball.npz")
        cfg = dynamic.resolve_config(
            "kplanes_cam", overrides={**TINY_SCENE, "background": [0.0, 0.0, 0.0], "field": SMALL_KPLANES}
        )
        return dynamic.fit_dynamic(path, cfg, tmp_path / "run", "cpu", progress=False)
    root = write_frames_folder(tmp_path / "clip", synthetic_clip(4))
    cfg = video.resolve_config("cam", overrides={"epochs": 3, "generator": SMALL})
    return video.fit_video(root, cfg, tmp_path / "run", "cpu", progress=False)


KEYS = {
    "image": ("psnr", "ssim", "params"),
    "nerf": ("psnr", "ssim", "psnr_8bit", "params"),
    "dynamic": ("psnr", "ssim", "psnr_8bit", "params"),
    "video": ("psnr", "psnr_float", "ms_ssim", "bytes", "params"),
}


@pytest.mark.parametrize("task", list(GOLDEN))
def test_a_tiny_seeded_fit_gives_the_recorded_metrics(task, tmp_path):
    metrics = fit(task, tmp_path)
    got = {key: metrics[key] for key in KEYS[task]}
    assert got == pytest.approx(GOLDEN[task], rel=RTOL), got
