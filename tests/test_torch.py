"""PyTorch interchange: a rustbp file loads into nn.Sequential with safetensors.torch + load_state_dict,
and to_torch / from_torch convert directly. Skipped when PyTorch is not installed (it is optional)."""

from __future__ import annotations

import numpy as np
import pytest
import rustbp

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
nn = torch.nn

CASES = {
    "sigmoid": {},
    "relu-softmax-f32": {
        "hidden_activation": "relu",
        "output_activation": "softmax",
        "loss": "cross_entropy",
        "dtype": "float32",
    },
    "tanh-identity-nobias": {"hidden_activation": "tanh", "output_activation": "identity", "bias": "none"},
    "shared": {"bias": "shared", "hidden_activation": "identity"},
}


def torch_module(net):
    acts = {
        "sigmoid": nn.Sigmoid(),
        "relu": nn.ReLU(),
        "tanh": nn.Tanh(),
        "identity": nn.Identity(),
        "softmax": nn.Softmax(dim=-1),
    }
    c = net.config
    dtype = getattr(torch, c.dtype)
    bias = c.bias != "none"
    return nn.Sequential(
        nn.Linear(c.n_in, c.n_hidden, bias=bias, dtype=dtype),
        acts[c.hidden_activation],
        nn.Linear(c.n_hidden, c.n_out, bias=bias, dtype=dtype),
        acts[c.output_activation],
    )


@pytest.mark.parametrize("kw", CASES.values(), ids=CASES.keys())
def test_rustbp_file_loads_into_pytorch(tmp_path, rng, kw):
    net = rustbp.Network(5, 6, 3, seed=1, optimizer=rustbp.Adam(lr=0.01), **kw)
    X = rng.normal(size=(8, 5))
    net.train(X, np.full((8, 3), 1 / 3), 5)
    net.save(tmp_path / "net.safetensors")
    module = torch_module(net)
    module.load_state_dict(safetensors_torch.load_file(tmp_path / "net.safetensors"))  # strict
    with torch.no_grad():
        out = module(torch.from_numpy(X.astype(net.dtype))).numpy()
    np.testing.assert_allclose(out, net.forward(X), rtol=1e-6 if net.dtype == "float32" else 1e-12)


@pytest.mark.parametrize("kw", CASES.values(), ids=CASES.keys())
def test_to_torch_and_back(rng, kw):
    net = rustbp.Network(5, 6, 3, seed=2, **kw)
    module = net.to_torch(dtype=net.dtype)  # exact: the default is PyTorch's default dtype
    X = rng.normal(size=(4, 5))
    with torch.no_grad():
        out = module(torch.from_numpy(X.astype(net.dtype))).numpy()
    np.testing.assert_allclose(out, net.forward(X), rtol=1e-6 if net.dtype == "float32" else 1e-12)
    back = rustbp.Network.from_torch(module, loss=net.config.loss)
    np.testing.assert_array_equal(back.forward(X), net.forward(X)) if kw.get("bias") != "shared" else None
    assert back.config.hidden_activation == net.config.hidden_activation
    assert back.config.dtype == net.config.dtype


def test_from_torch_trains_like_pytorch(rng):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4, dtype=torch.float64), nn.Tanh(), nn.Linear(4, 2, dtype=torch.float64))
    net = rustbp.Network.from_torch(module, loss="mse", optimizer=rustbp.SGD(lr=0.1, momentum=0.9))
    assert net.config.output_activation == "identity"
    X, T = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.mse_loss(module(torch.from_numpy(X)), torch.from_numpy(T))
        loss.backward()
        opt.step()
        assert net.train_step(X, T) == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(net.get_weights()["w1"], module[0].weight.detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize(
    ("make_opt", "torch_opt"),
    [
        (lambda: rustbp.Adam(lr=0.05), lambda p: torch.optim.Adam(p, lr=0.05)),
        (
            lambda: rustbp.Adam(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
            lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
        ),
        (
            lambda: rustbp.SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
            lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
        ),
    ],
    ids=["adam", "adam-betas-eps-decay", "nesterov-decay"],
)
def test_optimizers_train_like_pytorch(rng, make_opt, torch_opt):
    torch.manual_seed(1)
    module = nn.Sequential(nn.Linear(3, 5, dtype=torch.float64), nn.ReLU(), nn.Linear(5, 4, dtype=torch.float64))
    net = rustbp.Network.from_torch(module, output_activation="softmax", loss="cross_entropy", optimizer=make_opt())
    X, T = rng.normal(size=(6, 3)), np.eye(4)[rng.integers(0, 4, 6)]
    opt = torch_opt(module.parameters())
    for _ in range(6):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(module(torch.from_numpy(X)), torch.from_numpy(T))
        loss.backward()
        opt.step()
        assert net.train_step(X, T) == pytest.approx(loss.item(), rel=1e-12)
    for k, p in zip(("w1", "b1", "w2", "b2"), module.parameters()):
        np.testing.assert_allclose(net.get_weights()[k], p.detach().numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    ("module", "pattern"),
    [
        (lambda: nn.Linear(2, 3), "nn.Sequential"),
        (lambda: nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 1)), "nn.Sequential"),
        (lambda: nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=-1), nn.Linear(3, 1)), "output activation"),
        (lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1, bias=False)), "bias"),
        (lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(4, 1)), "nn.Sequential"),
        (lambda: nn.Sequential(nn.Linear(2, 3, dtype=torch.float16), nn.ReLU(), nn.Linear(3, 1)), "float32"),
        (lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2), nn.Softmax(dim=0)), "dim"),
    ],
)
def test_from_torch_refuses_other_architectures(module, pattern):
    with pytest.raises(ValueError, match=pattern):
        rustbp.Network.from_torch(module())


def test_binary_cross_entropy_trains_like_bce_with_logits(rng):
    # From raw logits with loss="binary_cross_entropy": the sigmoid of nn.BCEWithLogitsLoss, whose mean
    # over every element is the loss; the same numbers as Sigmoid + nn.BCELoss where that is finite.
    torch.manual_seed(2)
    module = nn.Sequential(nn.Linear(3, 5, dtype=torch.float64), nn.Tanh(), nn.Linear(5, 2, dtype=torch.float64))
    net = rustbp.Network.from_torch(module, loss="binary_cross_entropy", optimizer=rustbp.SGD(lr=0.5, momentum=0.9))
    assert net.config.output_activation == "sigmoid"
    X, T = rng.normal(size=(6, 3)), rng.uniform(0, 1, (6, 2))
    opt = torch.optim.SGD(module.parameters(), lr=0.5, momentum=0.9)
    for _ in range(6):
        opt.zero_grad()
        z = module(torch.from_numpy(X))
        loss = nn.functional.binary_cross_entropy_with_logits(z, torch.from_numpy(T))
        assert nn.functional.binary_cross_entropy(torch.sigmoid(z), torch.from_numpy(T)).item() == pytest.approx(
            loss.item(), rel=1e-12
        )
        loss.backward()
        opt.step()
        assert net.train_step(X, T) == pytest.approx(loss.item(), rel=1e-12)
    for k, p in zip(("w1", "b1", "w2", "b2"), module.parameters()):
        np.testing.assert_allclose(net.get_weights()[k], p.detach().numpy(), rtol=1e-10, atol=1e-14)
