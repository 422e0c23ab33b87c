from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from core.errors import ClassNamesMismatchError, ConfigError
from models.correlation_sources import read_correlation
from models.gat import MaskedGATLayer

from .seed_reference import SeedBGATLayer


def _names(n: int) -> list[str]:
    return [f"c{i}" for i in range(n)]


def _random_layer_pair(seed: int, n: int, features: int, density: float) -> tuple[MaskedGATLayer, SeedBGATLayer]:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=generator) < density
    ours = MaskedGATLayer(mask, _names(n), mode="seed", in_features=features, out_features=features)
    seed_layer = SeedBGATLayer(features, features, dropout=0, alpha=0.2, mask=mask.float())
    with torch.no_grad():
        for name in ("W", "a", "beta"):
            value = torch.randn(getattr(ours, name).shape, generator=generator)
            getattr(ours, name).copy_(value)
            getattr(seed_layer, name).copy_(value)
    return ours, seed_layer


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    ("n", "features", "density", "dtype"),
    [
        # The seed's configuration (1 feature a node) in float32, as it runs.
        (80, 1, 0.1, torch.float32),
        (17, 1, 0.5, torch.float32),
        (9, 1, 0.0, torch.float32),
        # Wider nodes sum the attention logit in another order than the seed's single matmul,
        # which float32 rounds differently (~3e-6); float64 shows the arithmetic is the same.
        (12, 3, 0.3, torch.float64),
        (80, 1, 0.1, torch.float64),
    ],
)
def test_seed_mode_reproduces_the_seed_layer(seed: int, n: int, features: int, density: float, dtype) -> None:
    ours, seed_layer = _random_layer_pair(seed, n, features, density)
    ours, seed_layer = ours.to(dtype), seed_layer.to(dtype)
    seed_layer.mask = seed_layer.mask.to(dtype)
    x = 3.0 * torch.randn(4, n, features, generator=torch.Generator().manual_seed(100 + seed), dtype=dtype)
    with torch.no_grad():
        expected, actual = seed_layer(x), ours(x)
    assert actual.shape == expected.shape == (4, n, features)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-6)


def test_seed_mode_gives_masked_pairs_weight_and_softmax_mode_does_not() -> None:
    n = 10
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[0, 1] = True
    h = torch.randn(2, n, 1, generator=torch.Generator().manual_seed(0))
    seed_att = MaskedGATLayer(mask, _names(n), mode="seed").attention(h)
    soft_att = MaskedGATLayer(mask, _names(n), mode="softmax").attention(h)
    # Seed mode: masked logits become 0, so every pair still gets exp(0) weight.
    assert bool((seed_att > 0).all())
    # Softmax mode: only the edge 0→1 and the self-loops carry weight.
    kept = mask | torch.eye(n, dtype=torch.bool)
    assert bool((soft_att[:, ~kept] == 0).all())
    assert bool((soft_att[:, kept] > 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_softmax_mode_masked_pairs_are_exactly_zero_and_never_nan(dtype: torch.dtype) -> None:
    n = 30
    generator = torch.Generator().manual_seed(1)
    mask = torch.rand(n, n, generator=generator) < 0.2
    mask[3] = False  # a row with no neighbour at all: the self-loop keeps it defined
    layer = MaskedGATLayer(mask, _names(n), mode="softmax").to(dtype)
    x = (100.0 * torch.randn(3, n, 1, generator=generator)).to(dtype)  # logits far apart
    with torch.no_grad():
        attention = layer.attention(x @ layer.W)
        out = layer(x)
    kept = mask | torch.eye(n, dtype=torch.bool)
    assert bool(torch.isfinite(attention).all()) and bool(torch.isfinite(out).all())
    assert bool((attention[:, ~kept] == 0).all())
    torch.testing.assert_close(attention[:, 3], torch.eye(n, dtype=dtype)[3].expand(3, n))
    # Rows sum to 1 up to the rounding of the returned dtype (computed in float32).
    tolerance = {torch.float32: 1e-6, torch.float16: 1e-2, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(attention.float().sum(-1), torch.ones(3, n), atol=tolerance, rtol=0)


def test_softmax_mode_equals_a_softmax_over_the_kept_logits_only() -> None:
    n = 12
    generator = torch.Generator().manual_seed(5)
    mask = torch.rand(n, n, generator=generator) < 0.3
    layer = MaskedGATLayer(mask, _names(n), mode="softmax").double()
    h = torch.randn(2, n, 1, generator=generator, dtype=torch.float64)
    a1, a2 = layer.a.detach().flatten().tolist()
    kept = (mask | torch.eye(n, dtype=torch.bool)).numpy()
    expected = np.zeros((2, n, n))
    for b in range(2):
        for i in range(n):
            js = np.flatnonzero(kept[i])
            e = np.array([h[b, i, 0].item() * a1 + h[b, j, 0].item() * a2 for j in js])
            e = np.where(e > 0, e, 0.2 * e)
            expected[b, i, js] = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
    np.testing.assert_allclose(layer.attention(h).detach().numpy(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_float16_logits_that_would_overflow_stay_masked_and_finite(sign: float) -> None:
    n = 4
    mask = torch.zeros(n, n, dtype=torch.bool)
    layer = MaskedGATLayer(mask, _names(n), mode="softmax").half()
    with torch.no_grad():
        layer.a.fill_(2.0)
        h = torch.full((1, n, 1), sign * 60000.0, dtype=torch.float16)  # h·a1 + h·a2 overflows float16
        attention = layer.attention(h)
    assert bool(torch.isfinite(attention).all())
    torch.testing.assert_close(attention[0], torch.eye(n, dtype=torch.float16))


def test_attention_dropout_acts_in_training_only() -> None:
    n = 20
    mask = torch.ones(n, n, dtype=torch.bool)
    layer = MaskedGATLayer(mask, _names(n), dropout=0.5)
    reference = MaskedGATLayer(mask, _names(n), dropout=0.0)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(4, n, 1, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(layer.eval()(x), reference(x), rtol=0, atol=0)
        torch.manual_seed(0)
        assert not torch.allclose(layer.train()(x), reference(x))


def test_softmax_mode_on_real_coco_statistics(shared_data) -> None:
    correlation = read_correlation(shared_data / "coco_adj.pkl", names=shared_data / "coco_names_alphabetical.txt")
    names = correlation.class_names
    layer = MaskedGATLayer(torch.from_numpy(correlation.mask(0.1, "softmax")), names, mode="softmax")
    with torch.no_grad():
        layer.W.fill_(2.0)
        layer.a.copy_(torch.tensor([[5.0], [-5.0]]))
        x = 20.0 * torch.randn(8, len(names), 1, generator=torch.Generator().manual_seed(2))
        attention = layer.attention(x @ layer.W)
        out = layer(x)
    assert bool(torch.isfinite(out).all()) and not bool(torch.isnan(attention).any())
    assert bool((attention[:, ~layer.mask] == 0).all())
    for isolated in ("bear", "zebra"):
        i = names.index(isolated)
        assert int(layer.mask[i].sum()) == 1  # the self-loop only
        assert bool((attention[:, i, i] == 1).all())


def test_attention_is_quadratic_not_the_seeds_pairwise_concatenation() -> None:
    """No intermediate tensor is larger than [B, N, N]; the seed built [B, N, N, 2F]."""
    batch, n, features = 2, 40, 4

    class LargestTensor(TorchFunctionMode):
        largest = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if isinstance(result, torch.Tensor):
                LargestTensor.largest = max(LargestTensor.largest, result.numel())
            return result

    layer = MaskedGATLayer(torch.ones(n, n), _names(n), in_features=features, out_features=features)
    x = torch.randn(batch, n, features)
    with torch.no_grad(), LargestTensor():
        layer(x)
    assert LargestTensor.largest == batch * n * n


def test_mask_is_a_persistent_bool_buffer_that_follows_to() -> None:
    n = 5
    mask = torch.rand(n, n, generator=torch.Generator().manual_seed(3)) < 0.5
    layer = MaskedGATLayer(mask, _names(n), mode="seed")
    state = layer.state_dict()
    assert state["mask"].dtype == torch.bool
    assert torch.equal(state["mask"], mask)
    assert layer.to(torch.float64).mask.dtype == torch.bool  # dtype casts leave the mask alone
    assert layer.W.dtype == torch.float64
    assert layer.to("meta").mask.device.type == "meta"


@pytest.mark.gpu
def test_mask_follows_the_model_to_cuda() -> None:
    n = 6
    layer = MaskedGATLayer(torch.eye(n, dtype=torch.bool), _names(n)).cuda()
    assert layer.mask.is_cuda
    out = layer(torch.randn(2, n, 1, device="cuda"))
    assert out.is_cuda and bool(torch.isfinite(out).all())


def test_mask_and_names_survive_save_and_load() -> None:
    n = 6
    mask = torch.rand(n, n, generator=torch.Generator().manual_seed(4)) < 0.4
    source = MaskedGATLayer(mask, _names(n), mode="seed")
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target = MaskedGATLayer(torch.zeros(n, n), _names(n), mode="seed")
    target.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(target.mask, mask)
    x = torch.randn(2, n, 1)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_loading_a_state_dict_for_another_class_order_or_mode_is_refused() -> None:
    n = 4
    state = MaskedGATLayer(torch.eye(n), _names(n)).state_dict()
    with pytest.raises(ClassNamesMismatchError, match="another order"):
        MaskedGATLayer(torch.eye(n), list(reversed(_names(n)))).load_state_dict(state)
    with pytest.raises(ClassNamesMismatchError, match="missing"):
        MaskedGATLayer(torch.eye(n), ["x", "y", "z", "w"]).load_state_dict(state)
    with pytest.raises(ConfigError, match="mask mode"):
        MaskedGATLayer(torch.eye(n), _names(n), mode="seed").load_state_dict(state)


def test_a_refused_load_leaves_the_layer_unchanged() -> None:
    n = 4
    layer = MaskedGATLayer(torch.eye(n), _names(n))
    before = {k: v.clone() for k, v in layer.state_dict().items() if isinstance(v, torch.Tensor)}
    other = MaskedGATLayer(torch.ones(n, n), list(reversed(_names(n))))
    with torch.no_grad():
        other.W.fill_(7.0)
    with pytest.raises(ClassNamesMismatchError):
        layer.load_state_dict(other.state_dict())
    for key, value in layer.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, before[key]), key


def test_a_mask_of_probabilities_is_refused() -> None:
    with pytest.raises(ConfigError, match="0 or 1"):
        MaskedGATLayer(torch.tensor([[1.0, 0.05], [0.02, 1.0]]), _names(2))


def test_softmax_mask_without_self_loops_is_refused_on_load() -> None:
    n = 4
    layer = MaskedGATLayer(torch.eye(n), _names(n))
    state = layer.state_dict()
    state["mask"] = torch.zeros(n, n, dtype=torch.bool)
    with pytest.raises(ConfigError, match="self-loops"):
        layer.load_state_dict(state)


def test_bad_construction_arguments_get_typed_errors() -> None:
    with pytest.raises(ConfigError, match="square"):
        MaskedGATLayer(torch.ones(3, 4), _names(3))
    with pytest.raises(ClassNamesMismatchError, match="3 class names"):
        MaskedGATLayer(torch.ones(4, 4), _names(3))
    with pytest.raises(ConfigError, match="repeated"):
        MaskedGATLayer(torch.ones(2, 2), ["a", "a"])
    with pytest.raises(ConfigError, match="mask mode"):
        MaskedGATLayer(torch.ones(2, 2), _names(2), mode="hard")  # type: ignore[arg-type]
