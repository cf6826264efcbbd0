"""Architecture samplers and the MetaHypernetwork."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hilnas.pipeline.hypernet import (
    GDASSampler,
    MetaHypernetwork,
    ReinMaxSampler,
    make_sampler,
)


def _is_one_hot(x: torch.Tensor) -> bool:
    return bool(torch.all((x == 0) | (x == 1)) and torch.all(x.sum(-1) == 1))


@pytest.mark.parametrize("sampler", [ReinMaxSampler(), GDASSampler()], ids=["reinmax", "gdas"])
def test_samples_are_hard_one_hot_and_gradients_reach_every_logit(sampler):
    torch.manual_seed(0)
    logits = torch.randn(4, 6, 5, requires_grad=True)
    sample = sampler(logits, progress=0.3)
    assert sample.shape == logits.shape
    assert _is_one_hot(sample.detach().round())  # GDAS's ST value is 1 +- float rounding
    assert torch.allclose(sample.detach(), sample.detach().round(), atol=1e-6)
    weights = torch.randn(6, 5)
    (sample * weights).sum().backward()
    assert logits.grad is not None
    assert torch.all(torch.isfinite(logits.grad))
    assert int((logits.grad.abs() > 0).sum()) == logits.numel()  # every logit gets a gradient


def test_reinmax_gradient_descends_a_linear_cost():
    """Following the ReinMax gradient of a linear cost moves probability to the cheapest op."""
    torch.manual_seed(0)
    cost = torch.tensor([3.0, 2.0, 0.0, 1.0, 4.0])
    logits = torch.zeros(1, 5, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=0.5)
    sampler = ReinMaxSampler()
    for _ in range(200):
        opt.zero_grad()
        (sampler(logits) * cost).sum().backward()
        opt.step()
    assert int(logits.argmax()) == 2
    assert float(logits.detach().softmax(-1)[0, 2]) > 0.9


def test_samplers_respect_the_option_mask_and_a_generator():
    logits = torch.zeros(200, 3, 5)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [True] * 5])
    for sampler in (ReinMaxSampler(), GDASSampler()):
        s = sampler(logits, mask=mask, generator=torch.Generator().manual_seed(1)).detach()
        assert float(s[:, 1, 2:].abs().sum()) == 0.0
        again = sampler(logits, mask=mask, generator=torch.Generator().manual_seed(1)).detach()
        assert torch.equal(s, again)


def test_gdas_temperature_is_annealed_from_10_to_1():
    s = GDASSampler()
    assert s.tau_at(0.0) == pytest.approx(10.0)
    assert s.tau_at(1.0) == pytest.approx(1.0)
    assert 1.0 < s.tau_at(0.5) < 10.0
    assert s.tau_at(0.2) > s.tau_at(0.8)


def test_sampler_arguments_are_checked():
    with pytest.raises(ValueError, match=">= 1"):
        ReinMaxSampler(tau=0.5)
    with pytest.raises(ValueError, match="tau_min"):
        GDASSampler(tau_max=1.0, tau_min=2.0)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("gumbel-max")
    assert make_sampler("reinmax").config() == {"name": "reinmax", "tau": 1.0}


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypernetwork_starts_near_uniform_for_any_number_of_objectives(m):
    torch.manual_seed(0)
    net = MetaHypernetwork(num_objectives=m, embed_dim=10, num_decisions=6, num_options=5)
    r = torch.distributions.Dirichlet(torch.ones(m)).sample((32,))
    h = torch.rand(32, 10)
    logits = net(r, h)
    assert logits.shape == (32, 6, 5)
    probs = logits.softmax(-1)
    assert float((probs.detach() - 0.2).abs().max()) < 0.01


def test_hypernetwork_output_depends_on_preference_and_embedding_after_a_step():
    torch.manual_seed(0)
    net = MetaHypernetwork(
        num_objectives=2, embed_dim=10, num_decisions=6, num_options=5, hidden=32
    )
    r = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    h = torch.rand(10)
    target = torch.zeros(2, 6, 5)
    target[0, :, 0] = 5.0
    target[1, :, 3] = 5.0
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        ((net(r, h) - target) ** 2).mean().backward()
        opt.step()
    out = net(r, h).argmax(-1)
    assert torch.all(out[0] == 0) and torch.all(out[1] == 3)


def test_hypernetwork_checks_shapes():
    net = MetaHypernetwork(num_objectives=2, embed_dim=10, num_decisions=6, num_options=5)
    with pytest.raises(ValueError, match="preferences"):
        net(torch.rand(3, 3), torch.rand(3, 10))
    with pytest.raises(ValueError, match="at least 2"):
        MetaHypernetwork(num_objectives=1, embed_dim=10, num_decisions=6, num_options=5)
