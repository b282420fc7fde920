"""The rate estimate of quantized weights: the geometric entropy bound and its use as a loss."""

from __future__ import annotations

import numpy as np
import torch

from camfields.codec.entropy import estimated_bits, histogram
from camfields.compression.quantize import symmetric_integers
from camfields.compression.rate import estimated_rate_bits, geometric_entropy_bits, integer_magnitudes


def histogram_bits_per_weight(values: np.ndarray) -> float:
    return estimated_bits(histogram(values)[1]) / values.size


def test_geometric_entropy_equals_the_sum_over_its_distribution():
    for m in (0.01, 0.3, 1.0, 4.0, 20.0):
        t = m / (np.sqrt(1 + m * m) + 1)
        k = np.arange(-5000, 5001)
        p = (1 - t) / (1 + t) * t ** np.abs(k)
        assert abs((p * np.abs(k)).sum() - m) < 1e-9 * max(m, 1)  # the distribution has mean magnitude m
        exact = -(p[p > 0] * np.log2(p[p > 0])).sum()
        assert abs(float(geometric_entropy_bits(torch.tensor(m, dtype=torch.float64))) - exact) < 1e-9
    assert float(geometric_entropy_bits(torch.tensor(0.0))) < 1e-9
    m = torch.tensor([0.05, 0.7, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(geometric_entropy_bits, (m,))


def test_no_histogram_beats_the_bound_at_its_mean_magnitude():
    rng = np.random.default_rng(0)
    samples = [
        rng.integers(-31, 32, 5000),  # uniform
        np.round(rng.laplace(0, 2.5, 5000)).astype(np.int64),
        np.round(rng.normal(0, 6, 5000)).astype(np.int64),
        np.concatenate([rng.integers(-31, -20, 2000), rng.integers(20, 32, 2000)]),  # two lumps
        np.zeros(100, dtype=np.int64),
    ]
    for values in samples:
        bound = float(geometric_entropy_bits(torch.tensor(np.abs(values).mean(), dtype=torch.float64)))
        assert histogram_bits_per_weight(values) <= bound + 1e-9


def test_estimated_rate_is_close_to_the_coded_bits_of_laplacian_weights(tmp_path):
    from camfields.codec.bitstream import QuantizedTensor, read_bitstream, write_bitstream

    torch.manual_seed(0)
    tensors = [torch.distributions.Laplace(0.0, s).sample((n,)) for s, n in ((0.1, 3000), (2.0, 1000), (0.5, 500))]
    quantized = []
    for index, t in enumerate(tensors):
        values, steps = symmetric_integers(t, 6)
        quantized.append(QuantizedTensor(f"t{index}", tuple(t.shape), steps.numpy(), values.numpy()))
    write_bitstream(tmp_path / "w.camf", {}, 6, quantized)
    coded = read_bitstream(tmp_path / "w.camf").estimated_payload_bits  # under each tensor's model
    estimate = float(estimated_rate_bits(tensors, 6))
    assert coded <= estimate < 1.05 * coded
    # one step per channel measures each channel against its own peak
    w = torch.randn(4, 50) * torch.tensor([[1.0], [10.0], [0.1], [3.0]])
    magnitudes = integer_magnitudes(w, 6, per_channel=True)
    assert torch.allclose(magnitudes.amax(1), torch.full((4,), 31.0))


def test_the_estimate_ignores_scale_and_descending_it_lowers_the_coded_bits():
    torch.manual_seed(1)
    w = torch.randn(2000, dtype=torch.float64)
    assert torch.allclose(estimated_rate_bits([w], 6), estimated_rate_bits([7.5 * w], 6))
    before = histogram_bits_per_weight(symmetric_integers(w, 6)[0].numpy())
    w.requires_grad_(True)
    optimizer = torch.optim.SGD([w], lr=0.01)
    for _ in range(50):
        optimizer.zero_grad()
        estimated_rate_bits([w], 6).backward()
        optimizer.step()
    after = histogram_bits_per_weight(symmetric_integers(w.detach(), 6)[0].numpy())
    assert after < before - 0.3, (before, after)
