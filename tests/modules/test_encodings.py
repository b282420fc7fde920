"""Input encodings against their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from camfields import (
    CamfieldsError,
    FieldConfig,
    FourierFeatures,
    HashGridEncoding,
    IdentityEncoding,
    PyramidEncoding,
    SinusoidalEncoding,
    build_field,
)
from camfields.fields import EncodingConfig, PyramidConfig


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


def test_pyramid_levels_halve_per_axis_down_to_two_nodes():
    enc = PyramidEncoding([37, 10], levels=5, features=2)
    assert [g.resolution for g in enc.grids] == [(37, 10), (19, 5), (10, 3), (5, 2), (3, 2)]
    assert enc.out_dim == 10 and enc(torch.zeros(4, 2)).shape == (4, 10)
    assert len(list(enc.parameters())) == 5  # one tensor per level: one entropy model each in a file


@pytest.mark.parametrize("resolution", [[9, 7], [5, 6, 4], [11]])
def test_pyramid_reads_each_level_as_its_dense_grid_does(resolution):
    """The fast path (grid_sample, 2D and 3D) gives each DenseGrid's multilinear values and gradients
    (at random coordinates, nodes and cotangents, in float64)."""
    torch.manual_seed(len(resolution))
    enc = PyramidEncoding(resolution, levels=3, features=2, init_scale=1.0).double()
    coords = (torch.rand(64, len(resolution), dtype=torch.float64) * 2 - 1).requires_grad_()
    cotangent = torch.randn(64, 6, dtype=torch.float64)
    fast = enc(coords)
    (fast * cotangent).sum().backward()
    fast_grads = [g.table.grad.clone() for g in enc.grids] + [coords.grad.clone()]
    enc.zero_grad()
    coords.grad = None
    reference = torch.cat([grid(coords) for grid in enc.grids], dim=-1)
    (reference * cotangent).sum().backward()
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)
    for got, want in zip(fast_grads, [g.table.grad for g in enc.grids] + [coords.grad]):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_a_pyramid_field_needs_its_resolution_and_bounds_it_in_one_sentence():
    cfg = FieldConfig(encoding=EncodingConfig("pyramid"), hidden=8, depth=1)
    with pytest.raises(CamfieldsError, match=r"pyramid.resolution must give the finest level's nodes along each of"):
        build_field(cfg, 2, 3)
    cfg.encoding.pyramid = PyramidConfig(resolution=[1 << 13, 1 << 13])
    with pytest.raises(CamfieldsError, match="latent pyramid of .* nodes has over 16,777,216"):
        cfg.validate()
    cfg.encoding.pyramid = PyramidConfig(levels=0, resolution=[4, 4])
    with pytest.raises(CamfieldsError, match="encoding.pyramid.levels must be from 1"):
        cfg.validate()
