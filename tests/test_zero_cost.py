"""Each zero-cost measure against an independent computation on a tiny network."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from worker.methods.zero_cost.fisher import fisher
from worker.methods.zero_cost.grad_norm import grad_norm
from worker.methods.zero_cost.grasp import grasp
from worker.methods.zero_cost.jacob_cov import NO_PATH, jacob_cov
from worker.methods.zero_cost.naswot import NO_RELU, SINGULAR, naswot
from worker.methods.zero_cost.plain import plain
from worker.methods.zero_cost.snip import snip
from worker.methods.zero_cost.synflow import OVERFLOW, synflow, synflow_bn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TimesZero(nn.Module):
    """NB201's ``none``: zeros that stay connected to the graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


def conv_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )


def make_batch(
    n: int = 8, size: int = 6, classes: int = 5, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def reference_weight_grads(model: nn.Module, batch) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, dL/dW) of every Conv2d/Linear weight via a plain ``loss.backward()`` on a copy."""
    net = copy.deepcopy(model).train()
    images, labels = batch
    F.cross_entropy(net(images), labels).backward()
    return [
        (m.weight.detach().double().numpy(), m.weight.grad.double().numpy())
        for m in net.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]


# ---------------------------------------------------------------- gradient measures


def test_grad_norm_is_a_sum_of_per_layer_norms() -> None:
    model, batch = conv_net(), make_batch()
    expected = sum(np.sqrt((g**2).sum()) for _, g in reference_weight_grads(model, batch))
    assert grad_norm(model, batch).value == pytest.approx(expected, rel=1e-5)


def test_snip_is_sum_of_abs_weight_times_grad() -> None:
    model, batch = conv_net(), make_batch()
    expected = sum(np.abs(w * g).sum() for w, g in reference_weight_grads(model, batch))
    assert snip(model, batch).value == pytest.approx(expected, rel=1e-5)


def test_plain_is_signed() -> None:
    model, batch = conv_net(), make_batch()
    pairs = reference_weight_grads(model, batch)
    expected = sum((w * g).sum() for w, g in pairs)
    assert plain(model, batch).value == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert abs(expected) < sum(np.abs(w * g).sum() for w, g in pairs)  # signs really cancel


def test_measures_use_train_mode_even_when_handed_an_eval_model() -> None:
    model, batch = conv_net(), make_batch()
    expected = sum(np.abs(w * g).sum() for w, g in reference_weight_grads(model, batch))
    model.eval()
    assert snip(model, batch).value == pytest.approx(expected, rel=1e-5)


def test_gradient_measures_leave_grads_untouched() -> None:
    model, batch = conv_net(), make_batch()
    for measure in (grad_norm, snip, plain, grasp, fisher):
        measure(model, batch)
    assert all(p.grad is None for p in model.parameters())


def test_grasp_matches_an_explicit_hessian() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Tanh(), nn.Linear(3, 2))
    x = torch.randn(6, 4)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    reference = copy.deepcopy(model).double().train()
    names = ["0.weight", "3.weight"]
    shapes = [dict(reference.named_parameters())[n].shape for n in names]
    theta = torch.cat([dict(reference.named_parameters())[n].detach().flatten() for n in names])

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        parts, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            parts[name] = flat[start : start + shape.numel()].reshape(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(reference, parts, (x.double(),)), y)

    hessian = torch.autograd.functional.hessian(loss_of, theta)
    gradient = torch.autograd.functional.jacobian(loss_of, theta)
    expected = float(-(theta * (hessian @ gradient)).sum())
    assert abs(expected) > 1e-6
    assert grasp(model, (x, y)).value == pytest.approx(expected, rel=1e-4)


# ---------------------------------------------------------------- fisher


def test_fisher_per_channel_with_fan_in_weighting() -> None:
    model, batch = conv_net(), make_batch()
    images, labels = batch
    net = copy.deepcopy(model).train()
    layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    fan_in = [3 * 3 * 3, 2 * 3 * 3, 4]  # prod(W.shape[1:]): the grouped conv sees 2 of its 4 inputs
    # Independent route: a per-sample, per-channel mask m (= 1) multiplies each layer output;
    # dL/dm_nk is exactly Σ_spatial a ⊙ dL/da.
    masks = []

    def mask_output(_module, _inputs, output):
        shape = (output.shape[0], output.shape[1]) + (1,) * (output.dim() - 2)
        mask = torch.ones(shape, requires_grad=True)
        masks.append(mask)
        return output * mask

    handles = [layer.register_forward_hook(mask_output) for layer in layers]
    loss = F.cross_entropy(net(images), labels)
    for h in handles:
        h.remove()
    mask_grads = torch.autograd.grad(loss, masks)
    expected = 0.0
    for grad, weight in zip(mask_grads, fan_in, strict=True):
        g = grad.reshape(grad.shape[0], grad.shape[1]).double()
        expected += float((0.5 * g.pow(2).mean(0)).sum()) * weight
    assert expected > 0
    assert fisher(model, batch).value == pytest.approx(expected, rel=1e-4)


# ---------------------------------------------------------------- synflow


def test_synflow_two_layer_linear_closed_form_in_float64() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.BatchNorm1d(7), nn.Linear(7, 3))
    x = torch.randn(4, 3, 2, 2)
    w1 = model[1].weight.detach().double().abs().numpy()
    b1 = model[1].bias.detach().double().abs().numpy()
    w2 = model[3].weight.detach().double().abs().numpy()
    ones_in = np.ones(12)
    # R = 1ᵀ(|W2|(|W1|1 + |b1|) + |b2|); Σ|W1 ⊙ dR/dW1| = 1ᵀ|W2||W1|1, Σ|W2 ⊙ dR/dW2| = 1ᵀ|W2|(|W1|1 + |b1|)
    expected = 2 * (w2 @ w1 @ ones_in).sum() + (w2 @ b1).sum()
    result = synflow(model, (x, torch.zeros(4, dtype=torch.long)))
    assert result.reason is None
    assert result.value == pytest.approx(expected, rel=1e-12)  # float32 would miss by ~1e-7
    assert result.info["log10"] == pytest.approx(math.log10(expected), rel=1e-12)


def test_synflow_leaves_the_given_model_untouched() -> None:
    model = conv_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    synflow(model, make_batch())
    synflow_bn(model, make_batch())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2


def _homogeneous_net(with_bn: bool) -> nn.Sequential:
    torch.manual_seed(7)
    layers: list[nn.Module] = [nn.Conv2d(3, 4, 3, padding=1, bias=False)]
    if with_bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [
        nn.ReLU(),
        nn.Conv2d(4, 2, 3, padding=1, bias=False),
        nn.Flatten(),
        nn.Linear(2 * 25, 3, bias=False),
    ]
    return nn.Sequential(*layers)


def test_synflow_removes_batchnorm_euler_identity() -> None:
    # Without BN and biases, R is positively homogeneous of degree 1 in each layer's weights, so
    # Σ W ⊙ dR/dW = R for every layer: synflow = (number of layers) · R.
    model = _homogeneous_net(with_bn=True)
    plain_net = _homogeneous_net(with_bn=False)
    weights = [
        m.weight.detach().double().abs() for m in plain_net.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    out = torch.ones(1, 3, 5, 5, dtype=torch.float64)
    out = F.conv2d(out, weights[0], padding=1).relu()
    out = F.conv2d(out, weights[1], padding=1).flatten(1)
    flow = float((out @ weights[2].T).sum())
    batch = (torch.randn(2, 3, 5, 5), torch.zeros(2, dtype=torch.long))
    assert synflow(model, batch).value == pytest.approx(3 * flow, rel=1e-12)


def test_synflow_bn_keeps_batchnorm_in_train_mode() -> None:
    model = _homogeneous_net(with_bn=True)
    conv1, bn, _, conv2, _, linear = model
    w = [t.detach().double().abs().requires_grad_(True) for t in (conv1.weight, conv2.weight, linear.weight)]
    gamma, beta = bn.weight.detach().double().abs(), bn.bias.detach().double().abs()
    out = F.conv2d(torch.ones(1, 3, 5, 5, dtype=torch.float64), w[0], padding=1)
    out = F.batch_norm(out, None, None, gamma, beta, training=True).relu()
    out = F.conv2d(out, w[1], padding=1).flatten(1) @ w[2].T
    grads = torch.autograd.grad(out.sum(), w)
    expected = sum(float((wi.detach() * gi).abs().sum()) for wi, gi in zip(w, grads, strict=True))
    batch = (torch.randn(2, 3, 5, 5), torch.zeros(2, dtype=torch.long))
    value = synflow_bn(model, batch).value
    assert value == pytest.approx(expected, rel=1e-10)
    assert value != pytest.approx(synflow(model, batch).value, rel=1e-3)


def test_synflow_zero_when_every_path_is_blocked() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), TimesZero(), nn.Linear(4, 3))
    result = synflow(model, (torch.randn(2, 3, 2, 2), torch.zeros(2, dtype=torch.long)))
    assert result.value == 0.0
    assert result.reason is None
    assert result.info["log10"] == -math.inf


def test_synflow_overflow_is_reported_not_hidden() -> None:
    # Eleven layers of weight 1e30 (fine in float32) push the float64 flow past 1e308.
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 4, bias=False), *[nn.Linear(4, 4, bias=False) for _ in range(10)]
    )
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1e30)
    result = synflow(model, (torch.randn(2, 3, 2, 2), torch.zeros(2, dtype=torch.long)))
    assert result.value == math.inf  # "largest", not NaN from inf·0 in the backward pass
    assert result.reason == OVERFLOW


# ---------------------------------------------------------------- jacob_cov


def jacob_cov_reference(jacobian: np.ndarray) -> float:
    corr = np.corrcoef(jacobian)
    v = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(v + 1e-5) + 1.0 / (v + 1e-5)))


def test_jacob_cov_on_a_known_jacobian() -> None:
    # f(x) = W (x ⊙ x): d(Σ f)/dx_n = 2 x_n ⊙ (Wᵀ 1), known in closed form.
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), Square(), nn.Linear(27, 4))
    x = torch.randn(10, 3, 3, 3)
    w_sum = model[2].weight.detach().double().sum(0).numpy()
    jacobian = 2 * x.double().reshape(10, -1).numpy() * w_sum
    expected = jacob_cov_reference(jacobian)
    labels_a = torch.zeros(10, dtype=torch.long)
    labels_b = torch.arange(10) % 4
    result = jacob_cov(model, (x, labels_a))
    assert result.reason is None
    assert result.value == pytest.approx(expected, rel=1e-5)
    assert jacob_cov(model, (x, labels_b)).value == result.value  # labels unused


def test_jacob_cov_is_nan_without_a_path_from_the_input() -> None:
    model = nn.Sequential(nn.Flatten(), TimesZero(), nn.Linear(27, 4))
    result = jacob_cov(model, (torch.randn(6, 3, 3, 3), torch.zeros(6, dtype=torch.long)))
    assert math.isnan(result.value)
    assert result.reason == NO_PATH


def test_jacob_cov_is_nan_when_one_row_is_constant() -> None:
    model = nn.Sequential(nn.Flatten(), Square(), nn.Linear(27, 4))
    x = torch.randn(6, 3, 3, 3)
    x[2] = 0.0  # its Jacobian row is all zeros
    result = jacob_cov(model, (x, torch.zeros(6, dtype=torch.long)))
    assert math.isnan(result.value)
    assert result.reason is not None and result.reason.startswith("1 of 6")


# ---------------------------------------------------------------- naswot


def naswot_reference(codes_per_relu: list[np.ndarray]) -> float:
    n = codes_per_relu[0].shape[0]
    kernel = np.zeros((n, n))
    for c in codes_per_relu:
        c = c.astype(np.float64)
        kernel += c @ c.T + (1 - c) @ (1 - c).T
    return float(np.linalg.slogdet(kernel)[1])


def test_naswot_kernel_on_a_known_activation_pattern() -> None:
    torch.manual_seed(4)
    hidden = nn.Linear(16, 9)
    model = nn.Sequential(nn.Flatten(), nn.ReLU(), hidden, nn.ReLU(inplace=True), nn.Linear(9, 2))
    x = torch.randn(7, 1, 4, 4)
    first = (x.reshape(7, -1) > 0).numpy()
    second = (hidden(x.reshape(7, -1).relu()) > 0).detach().numpy()
    expected = naswot_reference([first, second])
    result = naswot(model, (x, torch.zeros(7, dtype=torch.long)))
    assert result.reason is None
    assert result.info["relu_calls"] == 2
    assert result.value == pytest.approx(expected, rel=1e-10)


def test_naswot_identical_codes_give_minus_infinity() -> None:
    model = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(16, 2))
    x = torch.randn(5, 1, 4, 4)
    x[3] = 2.5 * x[1]  # same signs, different values: identical codes
    result = naswot(model, (x, torch.zeros(5, dtype=torch.long)))
    assert result.value == -math.inf
    assert result.reason == SINGULAR


def test_naswot_without_relu() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    result = naswot(model, (torch.randn(5, 1, 4, 4), torch.zeros(5, dtype=torch.long)))
    assert result.value == -math.inf
    assert result.reason == NO_RELU


def test_fisher_refuses_an_output_changed_in_place() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(27, 4), nn.ReLU(inplace=True), nn.Linear(4, 3))
    with pytest.raises(RuntimeError, match="in place"):
        fisher(model, (torch.randn(4, 3, 3, 3), torch.zeros(4, dtype=torch.long)))
