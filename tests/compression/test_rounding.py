"""Encoder-side rounding of a sigmoid head: it finds better levels, never worse ones, and keeps the steps."""

from __future__ import annotations

import pytest
import torch

from camfields.compression.quantize import fake_quantize, rounding_distance, symmetric_integers, symmetric_step
from camfields.compression.rounding import round_sigmoid_head


def head_output(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(torch.nn.functional.conv2d(features, weight, bias))


def squared_error(features, target, weight, bias) -> float:
    return float(((head_output(features, weight, bias) - target) ** 2).mean())


@pytest.mark.parametrize("per_channel", [False, True])
def test_the_levels_that_made_the_target_are_found_where_plain_rounding_misses_them(per_channel):
    torch.manual_seed(0)
    step = 0.0625  # a bfloat16 number
    chosen = torch.randint(-25, 26, (3, 6, 1, 1)).float()
    chosen[:, 0] = 31  # the peak of every row, which fixes the step
    bias_levels = torch.tensor([-7.0, 3.0, 30.0])
    bias_levels[2] = 31
    # floats 0.6 of a step below the chosen levels: plain rounding takes the level under each
    weight = (chosen - 0.6) * step
    weight[:, 0] = 31 * step
    bias = (bias_levels - 0.6) * step
    bias[2] = 31 * step
    features = torch.randn(4, 6, 5, 7) * 3
    target = head_output(features, chosen * step, bias_levels * step)
    assert squared_error(features, target, fake_quantize(weight, 6, per_channel), fake_quantize(bias, 6)) > 1e-4

    new_weight, new_bias, moved = round_sigmoid_head(features, target, weight, bias, 6, per_channel, passes=6)
    assert torch.equal(new_weight, chosen * step) and torch.equal(new_bias, bias_levels * step)
    assert moved == 3 * 5 + 2  # every weight but the peaks
    assert squared_error(features, target, new_weight, new_bias) == 0


@pytest.mark.parametrize("per_channel", [False, True])
def test_the_chosen_levels_are_never_worse_and_the_file_stores_them_with_the_same_steps(per_channel):
    for seed in range(5):
        torch.manual_seed(seed)
        weight, bias = torch.randn(3, 8, 1, 1), torch.randn(3) * 0.3
        features, target = torch.randn(2, 8, 6, 6) * 4, torch.rand(2, 3, 6, 6)
        new_weight, new_bias, moved = round_sigmoid_head(features, target, weight, bias, 5, per_channel)
        before = squared_error(features, target, fake_quantize(weight, 5, per_channel), fake_quantize(bias, 5))
        assert squared_error(features, target, new_weight, new_bias) <= before
        for old, new in [(weight, new_weight), (bias, new_bias)]:
            q_old, step_old = symmetric_integers(old, 5, per_channel)
            q_new, step_new = symmetric_integers(new, 5, per_channel)
            assert torch.equal(step_old, step_new)  # the peaks stayed, so the steps did
            assert torch.equal(new, fake_quantize(new, 5, per_channel))  # already on its levels
            assert (q_new - q_old).abs().max() <= 1  # only ever the other neighbour
            # and only towards the float weight: a level past it would be further from it
            assert torch.all((q_new - q_old) * (old / symmetric_step(old, 5, per_channel) - q_old) >= 0)
        changed = int(
            (symmetric_integers(new_weight, 5, per_channel)[0] != symmetric_integers(weight, 5, per_channel)[0]).sum()
        )
        assert changed + int((new_bias != fake_quantize(bias, 5)).sum()) == moved


@pytest.mark.parametrize("per_channel", [False, True])
def test_rounding_distance_is_the_mean_squared_distance_to_the_levels_in_steps(per_channel):
    torch.manual_seed(1)
    weight = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    integers, steps = symmetric_integers(weight, 4, per_channel)
    step = steps.view(-1, 1, 1) if per_channel else steps
    expected = ((weight.detach() / step - integers) ** 2).mean()
    distance = rounding_distance(weight, 4, per_channel)
    assert distance.item() == pytest.approx(float(expected), rel=1e-12)
    assert 0 < distance.item() <= 0.25
    # its gradient points away from the levels: a small step against it brings every weight closer
    distance.backward()
    with torch.no_grad():
        moved = weight - 0.1 * weight.grad / weight.grad.abs().max() * step.min()
        assert float(rounding_distance(moved, 4, per_channel)) < distance.item()
        assert float(rounding_distance(fake_quantize(weight, 4, per_channel), 4, per_channel)) == 0


def test_a_learned_step_reads_the_same_levels_and_passes_lsqs_gradient_to_the_peak():
    torch.manual_seed(0)
    weight = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    cotangent = torch.randn(7, 5, dtype=torch.float64)
    levels = fake_quantize(weight, 4, step_gradient=True)
    assert torch.allclose(levels, fake_quantize(weight.detach(), 4), rtol=0, atol=1e-12)
    levels.backward(cotangent)
    step = symmetric_step(weight, 4)
    integers = torch.round(weight.detach() / step)
    peak = weight.detach().abs().argmax()
    expected = cotangent.clone().reshape(-1)
    # LSQ: d level / d step = q - w / step, and step = |w_peak| / 7 for 4 bits
    sign = torch.sign(weight.detach().reshape(-1)[peak])
    expected[peak] += sign * ((integers - weight.detach() / step) * cotangent).sum() / 7
    assert torch.allclose(weight.grad.reshape(-1), expected, atol=1e-12)
    assert not torch.allclose(weight.grad, cotangent)  # the peak's gradient is not plain straight-through
