"""The modulate op, CAM identity at initialisation, and gradients reaching every grid value."""

from __future__ import annotations

import functools

import pytest
import torch

from camfields import CAMMLP, CamfieldsError, DenseGrid, FourierFeatures, HashGrid, PlaneGrid, modulate


def reference_modulate(h, gamma, beta, norm, groups, eps=1e-5):
    """Written out from the definition, independently of camfields.ops."""
    if norm != "none":
        g = 1 if norm == "layer" else groups
        x = h.reshape(h.shape[0], g, -1)
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        h = ((x - mean) / torch.sqrt(var + eps)).reshape(h.shape)
    return torch.relu(h * gamma + beta)


@pytest.mark.parametrize("norm,groups", [("none", 1), ("layer", 1), ("group", 4)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_modulate_matches_definition_forward_and_backward(norm, groups, per_channel):
    n, c = 37, 24
    h = torch.randn(n, c, dtype=torch.float64, requires_grad=True)
    width = c if per_channel else 1
    gamma = (1 + 0.3 * torch.randn(n, width, dtype=torch.float64)).requires_grad_()
    beta = (0.3 * torch.randn(n, width, dtype=torch.float64)).requires_grad_()
    ours = modulate(h, gamma, beta, norm=norm, groups=groups)
    ref = reference_modulate(h, gamma, beta, norm, groups)
    torch.testing.assert_close(ours, ref)
    cot = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, [h, gamma, beta], cot), torch.autograd.grad(ref, [h, gamma, beta], cot)):
        torch.testing.assert_close(a, b)


def test_modulate_float64_gradcheck():
    h = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    gamma = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(5, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *t: modulate(*t, norm="group", groups=2, activation="softplus"), (h, gamma, beta)
    )


def test_modulate_bad_inputs_are_clear_errors():
    h = torch.randn(4, 6)
    with pytest.raises(CamfieldsError, match="gamma must have shape"):
        modulate(h, torch.ones(4, 3), torch.zeros(4, 1))
    with pytest.raises(CamfieldsError, match="unknown norm"):
        modulate(h, torch.ones(4, 1), torch.zeros(4, 1), norm="batch")
    with pytest.raises(CamfieldsError, match="groups dividing"):
        modulate(h, torch.ones(4, 1), torch.zeros(4, 1), norm="group", groups=4)
    with pytest.raises(CamfieldsError, match="unknown activation"):
        modulate(h, torch.ones(4, 1), torch.zeros(4, 1), activation="swish2")
    with pytest.raises(CamfieldsError, match="needs CUDA tensors"):
        modulate(h, torch.ones(4, 1), torch.zeros(4, 1), backend="cuda")


GRIDS = {
    "dense": (2, functools.partial(DenseGrid, (9, 7))),
    "planes-product": (3, functools.partial(PlaneGrid, (5, 6, 4), combine="product")),
    "planes-sum": (3, functools.partial(PlaneGrid, (5, 6, 4), combine="sum")),
    "kplanes": (4, functools.partial(PlaneGrid, (4, 4, 4, 3), combine="product")),
    "hash": (
        3,
        lambda f: HashGrid(
            3,
            levels=3,
            features_per_level=f,
            log2_table_size=5,
            base_resolution=3,
            growth=1.5,
            reduce="sum",
            init_scale=0.0,
        ),
    ),
}


def make_pair(kind: str, per_channel: bool, norm: str = "layer", activation: str = "relu"):
    dim, grid = GRIDS[kind]
    torch.manual_seed(1)
    cam = CAMMLP(
        dim,
        3,
        hidden=16,
        depth=3,
        encoding=FourierFeatures(dim, 8, 2.0),
        grid=grid,
        per_channel=per_channel,
        norm=norm,
        modulated_layers=[0, 2],
        activation=activation,
    )
    torch.manual_seed(1)
    plain = CAMMLP(
        dim,
        3,
        hidden=16,
        depth=3,
        encoding=FourierFeatures(dim, 8, 2.0),
        norm=norm,
        modulated_layers=[0, 2],
        activation=activation,
    )
    return dim, cam, plain


@pytest.mark.parametrize("kind", list(GRIDS))
@pytest.mark.parametrize("per_channel", [False, True])
def test_cam_equals_its_plain_mlp_at_initialisation(kind, per_channel):
    dim, cam, plain = make_pair(kind, per_channel)
    x = torch.rand(64, dim) * 2 - 1
    assert torch.equal(cam(x), plain(x))
    # the same weights: the MLP part of the state dicts is identical
    for name, value in plain.state_dict().items():
        assert torch.equal(cam.state_dict()[name], value)


@pytest.mark.parametrize("kind", list(GRIDS))
@pytest.mark.parametrize("per_channel", [False, True])
def test_every_grid_parameter_receives_a_gradient_at_initialisation(kind, per_channel):
    # softplus: a ReLU channel that is off at every point would block its own gradient
    dim, cam, _ = make_pair(kind, per_channel, norm="none", activation="softplus")
    x = torch.rand(4000, dim) * 2 - 1  # dense enough to touch every node
    loss = ((cam(x) - torch.rand(4000, 3)) ** 2).mean()
    loss.backward()
    grid_params = list(cam.modulation.grid.parameters())
    assert grid_params
    for p in grid_params:
        assert p.grad is not None
        assert (p.grad != 0).all(), f"{(p.grad == 0).sum().item()} of {p.numel()} values got no gradient"


def test_a_plain_product_of_zero_planes_would_not_learn():
    """The reference code's defect, shown on the raw planes: our combination avoids it."""
    planes = [torch.zeros(10, requires_grad=True) for _ in range(3)]
    (planes[0] * planes[1] * planes[2]).sum().backward()
    assert all((p.grad == 0).all() for p in planes)
    grid = PlaneGrid((4, 4, 4), features=1, combine="product")
    grid(torch.rand(500, 3) * 2 - 1).sum().backward()
    assert (grid.table.grad != 0).all()


def test_modulation_changes_the_output_once_the_grid_moves():
    dim, cam, plain = make_pair("dense", False)
    with torch.no_grad():
        cam.modulation.grid.table.add_(0.5)
    x = torch.rand(16, dim) * 2 - 1
    assert not torch.allclose(cam(x), plain(x))


def test_cammlp_configuration_errors():
    with pytest.raises(CamfieldsError, match="modulated layers"):
        CAMMLP(2, 1, depth=2, modulated_layers=[5])
    with pytest.raises(CamfieldsError, match="needs 6 features, got a grid with 12"):
        CAMMLP(2, 1, hidden=8, depth=3, grid=lambda f: DenseGrid((4, 4), f + 6))


@pytest.mark.parametrize("kind", list(GRIDS))
@pytest.mark.parametrize("per_channel", [False, True])
def test_grid_modulate_reads_each_layers_columns(kind, per_channel):
    """grid_modulate equals modulate with (gamma, beta) cut from the grid's full output."""
    from camfields.ops.grid_modulate import grid_modulate

    dim, factory = GRIDS[kind]
    c, layers = 12, 3
    width = c if per_channel else 1
    grid = factory(layers * 2 * width)
    with torch.no_grad():
        grid.table.normal_(0, 0.3)
    coords = torch.rand(50, dim, dtype=torch.float64) * 2 - 1
    grid = grid.double()
    h = torch.randn(50, c, dtype=torch.float64)
    features = grid(coords).view(50, layers, 2, width)
    for slot in range(layers):
        out = grid_modulate(h, grid.table, grid.corners(coords), slot * 2 * width, width, norm="layer")
        expected = modulate(h, 1 + features[:, slot, 0], features[:, slot, 1], norm="layer")
        torch.testing.assert_close(out, expected)


def test_grid_modulate_bad_columns_are_clear_errors():
    from camfields.ops.grid_modulate import grid_modulate

    grid = DenseGrid((4, 4), 6)
    corners = grid.corners(torch.zeros(3, 2))
    with pytest.raises(CamfieldsError, match="outside a table of 6"):
        grid_modulate(torch.randn(3, 8), grid.table, corners, column=5, width=1)
    with pytest.raises(CamfieldsError, match="width 1 or C"):
        grid_modulate(torch.randn(3, 8), grid.table, corners, column=0, width=3)


def test_skip_connection_feeds_the_encoded_input_again():
    mlp = CAMMLP(2, 1, hidden=8, depth=3, encoding=FourierFeatures(2, 4, 1.0), skips=[2], activation="tanh")
    assert mlp.hidden_layers[2].in_features == 8 + 8
    x = torch.rand(5, 2) * 2 - 1
    features = mlp.encoding(x)
    a = torch.tanh(mlp.hidden_layers[0](features))
    a = torch.tanh(mlp.hidden_layers[1](a))
    a = torch.tanh(mlp.hidden_layers[2](torch.cat([a, features], -1)))
    torch.testing.assert_close(mlp(x), mlp.output_layer(a))
    with pytest.raises(CamfieldsError, match="skip layers"):
        CAMMLP(2, 1, depth=3, skips=[0])


def test_deterministic_algorithms_keep_grid_modulation_on_the_fused_kernels(monkeypatch):
    """Under torch.use_deterministic_algorithms(True) the fused kernels still run (their backward
    then reduces the table gradient in a fixed order, see camfields.ops.table_grad)."""
    from camfields.ops import grid_modulate as gm

    calls = []
    monkeypatch.setattr(gm, "resolve_backend", lambda backend, *t: "torch" if backend == "torch" else "cuda")
    monkeypatch.setattr(gm.FusedGridModulate, "apply", lambda *args: calls.append(args) or args[0])
    grid = DenseGrid((5, 5), 4)
    h, coords = torch.randn(10, 3), torch.rand(10, 2) * 2 - 1
    args = (h, grid.table, grid.corners(coords), 0, 1)
    torch.use_deterministic_algorithms(True)
    try:
        gm.grid_modulate(*args)
        gm.grid_modulate(*args, backend="cuda")
        gm.grid_modulate(*args, backend="torch")
    finally:
        torch.use_deterministic_algorithms(False)
    assert len(calls) == 2
