"""Input encodings against their definitions."""

from __future__ import annotations

import math

import torch

from camfields import FourierFeatures, HashGridEncoding, IdentityEncoding, SinusoidalEncoding


def test_identity_encoding():
    x = torch.rand(5, 3) * 2 - 1
    enc = IdentityEncoding(3)
    assert enc.out_dim == 3 and torch.equal(enc(x), x)


def test_sinusoidal_encoding_matches_nerf_definition():
    enc = SinusoidalEncoding(2, num_freqs=3)
    x = torch.tensor([[0.25, -0.5]])
    out = enc(x)[0]
    assert enc.out_dim == out.numel() == 2 * (2 * 3 + 1)
    phases = [math.pi * 2**k * v for v in (0.25, -0.5) for k in range(3)]
    expected = [0.25, -0.5] + [math.sin(p) for p in phases] + [math.cos(p) for p in phases]
    torch.testing.assert_close(out, torch.tensor(expected))


def test_fourier_features_use_sigma_in_cycles_per_unit_interval():
    torch.manual_seed(0)
    enc = FourierFeatures(2, num_features=4096, sigma=10.0)
    assert enc.out_dim == 8192
    assert abs(enc.proj.std().item() - 10.0) < 0.3
    x = torch.tensor([[-1.0, -1.0], [0.2, -0.4]])
    out = enc(x)
    u = (x + 1) / 2
    expected = torch.cat([torch.sin(2 * math.pi * u @ enc.proj), torch.cos(2 * math.pi * u @ enc.proj)], -1)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)  # phases reach hundreds of radians
    torch.testing.assert_close(out[0], torch.cat([torch.zeros(4096), torch.ones(4096)]))  # u = 0


def test_hash_grid_encoding_concatenates_levels_and_starts_near_zero():
    enc = HashGridEncoding(3, levels=4, features_per_level=2, log2_table_size=8, base_resolution=2, growth=2.0)
    out = enc(torch.rand(10, 3) * 2 - 1)
    assert enc.out_dim == 8 and out.shape == (10, 8)
    assert 0 < out.abs().max() <= 1e-4
