"""ops.conv_modulate: NeRV's CAM as a functional op, against the formula it replaced."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from camfields import CamfieldsError
from camfields.ops.conv_modulate import conv_modulate


@pytest.mark.parametrize("norm", ["instance", "none"])
def test_conv_modulate_matches_the_inline_cam_of_the_generator(norm):
    torch.manual_seed(0)
    x, gamma, beta = torch.randn(3, 5, 6, 4), 1 + 0.3 * torch.randn(3, 5), torch.randn(3, 5)
    normed = F.instance_norm(x) if norm == "instance" else x
    expected = F.gelu(normed * gamma[..., None, None] + beta[..., None, None])
    assert torch.equal(conv_modulate(x, gamma, beta, norm=norm), expected)
    # per frame and channel: changing frame 1's gamma changes only frame 1
    other = gamma.clone()
    other[1, 2] += 1
    changed = (conv_modulate(x, other, beta, norm=norm) != expected).flatten(2).any(-1)
    assert changed[1, 2] and changed.sum() == 1


@pytest.mark.parametrize("norm", ["instance", "none"])
def test_conv_modulate_gradients_pass_float64_gradcheck(norm):
    torch.manual_seed(1)
    inputs = [
        torch.randn(2, 3, 4, 4, dtype=torch.float64),
        torch.randn(2, 3, dtype=torch.float64),
        torch.randn(2, 3, dtype=torch.float64),
    ]
    inputs = [t.requires_grad_() for t in inputs]
    assert torch.autograd.gradcheck(lambda *a: conv_modulate(*a, norm=norm, activation="tanh"), inputs)


def test_conv_modulate_refuses_bad_shapes_norms_and_backends():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(CamfieldsError, match=r"gamma must have shape \(2, 3\)"):
        conv_modulate(x, torch.ones(2, 1), torch.zeros(2, 3))
    with pytest.raises(CamfieldsError, match=r"feature maps must have shape \(N, C, H, W\)"):
        conv_modulate(x[0], torch.ones(2, 3), torch.zeros(2, 3))
    with pytest.raises(CamfieldsError, match="unknown norm 'layer'"):
        conv_modulate(x, torch.ones(2, 3), torch.zeros(2, 3), norm="layer")
    with pytest.raises(CamfieldsError, match="no fused CUDA kernel yet"):
        conv_modulate(x, torch.ones(2, 3), torch.zeros(2, 3), backend="cuda")
    with pytest.raises(CamfieldsError, match="unknown backend 'fast'"):
        conv_modulate(x, torch.ones(2, 3), torch.zeros(2, 3), backend="fast")


def test_decoding_a_video_file_imports_no_training_code():
    code = (
        "import sys, camfields.codec.video, camfields.commands.decode_video\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('camfields.training', 'camfields.tasks', "
        "'camfields.metrics', 'torch.utils.tensorboard')))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
