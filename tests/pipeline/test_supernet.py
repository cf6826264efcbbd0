"""The NB201 weight-sharing supernet."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hilnas.pipeline.hypernet import GDASSampler, ReinMaxSampler
from hilnas.pipeline.spaces import ModelConfig, get_space
from hilnas.pipeline.spaces.nb201.supernet import NB201Supernet

DIGITS = ModelConfig(channels=4, cells_per_stage=1, input_size=8, in_channels=1, num_classes=10)


@pytest.fixture(scope="module")
def net():
    return NB201Supernet(DIGITS)


def test_forward_shape_for_the_digits_skeleton(net):
    arch = NB201Supernet.one_hot([3, 3, 1, 2, 4, 0])
    out = net(torch.randn(5, 1, 8, 8), arch)
    assert out.shape == (5, 10)


@pytest.mark.parametrize("sampler", [ReinMaxSampler(), GDASSampler()], ids=["reinmax", "gdas"])
def test_gradient_reaches_the_logits_through_the_supernet(net, sampler):
    torch.manual_seed(0)
    logits = torch.zeros(6, 5, requires_grad=True)
    arch = sampler(logits)
    loss = torch.nn.functional.cross_entropy(
        net(torch.randn(16, 1, 8, 8), arch), torch.randint(10, (16,))
    )
    loss.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


def test_only_the_selected_operation_runs(net):
    """Ops that are not selected get no weight gradient (they were never computed)."""
    net.zero_grad(set_to_none=True)
    arch = NB201Supernet.one_hot([3, 3, 3, 3, 3, 3])  # every edge a 3x3 conv
    x = torch.randn(8, 1, 8, 8)
    net(x, arch).sum().backward()
    for cell in (c for c in net.cells if hasattr(c, "edges")):
        for edge in cell.edges:
            conv3 = edge.ops[3][1].weight
            conv1 = edge.ops[2][1].weight
            assert conv3.grad is not None and float(conv3.grad.abs().sum()) > 0
            assert conv1.grad is None


def test_subnetwork_matches_the_pruned_discrete_network_structure(net):
    """A disconnected architecture gives a constant output (no path from the input)."""
    arch = NB201Supernet.one_hot([0, 0, 0, 0, 0, 0])
    out = net(torch.randn(6, 1, 8, 8), arch)
    assert torch.allclose(out, out[:1].expand_as(out), atol=1e-5)


def test_error_pct_and_shape_checks(net):
    x, y = torch.randn(20, 1, 8, 8), torch.randint(10, (20,))
    err = net.error_pct(x, y, (1, 2, 3, 4, 1, 2), batch_size=7)
    assert 0.0 <= err <= 100.0
    with pytest.raises(ValueError, match="one-hot"):
        net(x, torch.zeros(5, 5))


def test_weights_are_deterministic_for_a_seed():
    a, b = NB201Supernet(DIGITS, seed=3), NB201Supernet(DIGITS, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=False):
        assert ka == kb and torch.equal(va, vb)
    assert get_space("nb201").num_decisions == 6
