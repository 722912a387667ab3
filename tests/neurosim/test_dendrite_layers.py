"""Active-dendrite layers and k-WTA against numpy re-computations of the paper's equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurosim.dendrites.layers import (
    ActiveDendritesLayer,
    DendriticSegments,
    KWinners,
    dendritic_absolute_max_gate_1d,
    dendritic_bias_1d,
    dendritic_gate_1d,
)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_kwinners(x, duty, k, beta):
    boosted = x * np.exp(beta * (k / x.shape[1] - duty))
    out = np.zeros_like(x)
    for b in range(len(x)):
        top = np.argsort(-boosted[b])[:k]
        out[b, top] = x[b, top]
    return out


def test_kwinners_matches_numpy_topk_with_boosting():
    gen = torch.Generator().manual_seed(0)
    kw = KWinners(50, 0.1, boost_strength=2.0)
    duty = torch.rand(50, generator=gen) * 0.3
    kw.duty_cycle.copy_(duty)
    x = torch.randn(16, 50, generator=gen)
    out = kw(x).numpy()
    ref = _numpy_kwinners(x.numpy(), duty.numpy(), 5, 2.0)
    np.testing.assert_array_equal(out, ref)
    assert ((out != 0).sum(axis=1) == 5).all()
    # boosting matters: without it the winners differ for some row
    assert not np.array_equal(ref, _numpy_kwinners(x.numpy(), duty.numpy(), 5, 0.0))


def test_kwinners_gradient_only_through_winners_and_inference_k():
    kw = KWinners(40, 0.1, k_inference_factor=1.5, boost_strength=0.0)
    x = torch.randn(8, 40, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = kw(x)
    (out * torch.arange(40.0)).sum().backward()
    winners = out.detach() != 0
    expected = torch.where(winners, torch.arange(40.0).expand(8, -1), torch.zeros(8, 40))
    torch.testing.assert_close(x.grad, expected)
    kw.eval()
    assert ((kw(x.detach()) != 0).sum(dim=1) == int(4 * 1.5)).all()


def test_kwinners_duty_cycle_follows_numenta_recurrence():
    kw = KWinners(30, 0.2, boost_strength=1.0, duty_cycle_period=50)
    gen = torch.Generator().manual_seed(2)
    dc, seen = np.zeros(30), 0
    for batch in [20, 20, 20, 7]:
        x = torch.rand(batch, 30, generator=gen)  # positive: every winner counts as active
        before = kw.duty_cycle.numpy().copy()
        out = kw(x).numpy()
        np.testing.assert_array_equal(out, _numpy_kwinners(x.numpy(), before, 6, 1.0))
        seen += batch
        period = min(50, seen)
        dc = (dc * (period - batch) + (out > 0).sum(0)) / period
        np.testing.assert_allclose(kw.duty_cycle.numpy(), dc, rtol=1e-6)
    kw.update_boost_strength()
    assert float(kw.boost_strength) == pytest.approx(0.9)


def test_segments_match_einsum_and_keep_fixed_sparse_mask():
    gen = torch.Generator().manual_seed(3)
    seg = DendriticSegments(7, 4, 20, sparsity=0.6, generator=gen)
    mask = seg.zero_mask.numpy()
    assert ((mask == 0).sum(axis=2) == 12).all()
    assert np.abs(seg.weights.detach().numpy()).max() <= 1 / np.sqrt(20)
    c = torch.randn(5, 20, generator=gen)
    ref = np.einsum("ijk,bk->bij", seg.weights.detach().numpy() * mask, c.numpy())
    np.testing.assert_allclose(seg(c).detach().numpy(), ref, rtol=1e-5, atol=1e-6)
    seg(c).sum().backward()
    assert (seg.weights.grad.numpy()[mask == 0] == 0).all()


@pytest.mark.parametrize("variant", ["bias", "sigmoid", "absolute_max"])
def test_active_dendrites_layer_matches_paper_equations(variant):
    gen = torch.Generator().manual_seed(4)
    layer = ActiveDendritesLayer(12, 9, 3, 6, variant=variant, weight_sparsity=0.5,
                                 generator=gen)
    x, c = torch.randn(10, 12, generator=gen), torch.randn(10, 6, generator=gen)
    out = layer(x, c, return_indices=True)
    W = layer.weight.detach().numpy() * layer.weight_mask.numpy()
    y = x.numpy() @ W.T + layer.bias.detach().numpy()
    U = layer.segments.weights.detach().numpy()
    d = np.einsum("ijk,bk->bij", U, c.numpy())
    if variant == "bias":
        idx = d.argmax(2)
        ref = y + d.max(2)
    elif variant == "sigmoid":
        idx = d.argmax(2)
        ref = y * _sigmoid(d.max(2))
    else:
        idx = np.abs(d).argmax(2)
        ref = y * _sigmoid(np.take_along_axis(d, idx[..., None], 2)[..., 0])
    np.testing.assert_allclose(out.values.detach().numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.indices.numpy(), idx)
    assert ((layer.weight_mask.numpy() == 0).sum(1) == 6).all()


def test_absolute_max_gate_keeps_sign_of_strongest_segment():
    y = torch.ones(1, 2)
    d = torch.tensor([[[0.5, -4.0], [0.5, 0.1]]])
    gate = dendritic_absolute_max_gate_1d(y, d).values
    torch.testing.assert_close(gate, torch.tensor([[_sigmoid(-4.0), _sigmoid(0.5)]]).float())
    torch.testing.assert_close(dendritic_gate_1d(y, d).values,
                               torch.tensor([[_sigmoid(0.5), _sigmoid(0.5)]]).float())
    torch.testing.assert_close(dendritic_bias_1d(y, d).values, torch.tensor([[1.5, 1.5]]))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: DendriticSegments(4, 2, 8, sparsity=1.0), "sparsity"),
        (lambda: DendriticSegments(4, 2, 8, sparsity=-0.1), "sparsity"),
        (lambda: DendriticSegments(0, 2, 8), "n_units"),
        (lambda: ActiveDendritesLayer(4, 3, 2, 5, variant="max"), "variant"),
        (lambda: ActiveDendritesLayer(4, 3, 2, 5, weight_sparsity=1.5), "weight_sparsity"),
        (lambda: KWinners(10, 0.0), "percent_on"),
        (lambda: KWinners(10, 1.2), "percent_on"),
        (lambda: KWinners(10, 0.1, boost_strength=-1.0), "boost_strength"),
    ],
)
def test_bad_arguments_name_the_field(make, field):
    with pytest.raises(ValueError, match=rf"^{field}: expected"):
        make()


def test_bad_shapes_name_the_input():
    layer = ActiveDendritesLayer(4, 3, 2, 5)
    with pytest.raises(ValueError, match=r"^x: expected shape \(batch, 4\)"):
        layer(torch.zeros(2, 5), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"^context: expected shape \(batch, 5\)"):
        layer(torch.zeros(2, 4), torch.zeros(2, 4))
