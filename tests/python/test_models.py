"""lrnn.models: stacked models built from registered layers by name; step() of the whole stack
equals its forward, chunked forward with carried state equals the whole, the LM variant, training
gradients, compile, and argument errors."""
from __future__ import annotations

import pytest
import torch

import lrnn
from lrnn.models import SequenceLM, SequenceModel

from layer_testing import EXACT, assert_rel

LAYER_KWARGS = {
    "s5": {"d_state": 8, "blocks": 2},
    "lru": {"d_state": 8, "r_min": 0.5},
    "centaurus": {"d_state": 4, "state_blocks": 2, "mode": "neck"},
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_holds_the_time_invariant_layers():
    assert {"s5", "lru", "centaurus"} <= set(lrnn.nn.LAYERS)
    assert lrnn.nn.LAYERS["s5"] is lrnn.nn.S5


@pytest.mark.parametrize("ffn", ["half_glu", "glu", "gelu", "mlp"])
@pytest.mark.parametrize("name", list(LAYER_KWARGS))
def test_stacked_step_equals_forward(name, ffn):
    model = SequenceModel(3, 5, 8, 2, name, LAYER_KWARGS[name], pooling="none", ffn=ffn, norm="batch")
    model = model.double().eval()
    x = torch.randn(2, 13, 3, dtype=torch.float64)
    y = model(x)
    state = model.initial_state(2)
    ys = []
    for t in range(13):
        yt, state = model.step(x[:, t], state)
        ys.append(yt)
    assert_rel(torch.stack(ys, 1), y, EXACT, f"{name}/{ffn}")


@pytest.mark.parametrize("name", list(LAYER_KWARGS))
def test_stacked_chunks_equal_whole(name):
    model = SequenceModel(3, 5, 8, 3, name, LAYER_KWARGS[name], pooling="none", prenorm=False).double().eval()
    x = torch.randn(2, 20, 3, dtype=torch.float64)
    y = model(x)
    y1, state = model(x[:, :6], return_state=True)
    y2, _ = model(x[:, 6:], state, return_state=True)
    assert_rel(torch.cat([y1, y2], 1), y, EXACT, name)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_classification_head_shapes_and_last_pooling_step(pooling):
    model = SequenceModel(3, 7, 8, 2, "lru", LAYER_KWARGS["lru"], pooling=pooling).double().eval()
    x = torch.randn(4, 10, 3, dtype=torch.float64)
    logits = model(x)
    assert logits.shape == (4, 7)
    if pooling == "last":
        state = model.initial_state(4)
        for t in range(10):
            out, state = model.step(x[:, t], state)
        assert_rel(out, logits, EXACT, "last-token step")
    else:
        with pytest.raises(ValueError, match="mean pooling"):
            model.step(x[:, 0], model.initial_state(4))


@pytest.mark.parametrize("name", list(LAYER_KWARGS))
def test_language_model_step_equals_forward_and_trains(name):
    lm = SequenceLM(17, 8, 2, name, LAYER_KWARGS[name]).double()
    tokens = torch.randint(0, 17, (2, 12))
    logits = lm(tokens)
    assert logits.shape == (2, 12, 17)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 17), tokens[:, 1:].reshape(-1))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lm.parameters())
    lm.eval()
    logits = lm(tokens)
    state = lm.initial_state(2)
    outs = []
    for t in range(12):
        out, state = lm.step(tokens[:, t], state)
        outs.append(out)
    assert_rel(torch.stack(outs, 1), logits, EXACT, name)


def test_model_compiles_without_graph_breaks():
    model = SequenceModel(3, 5, 16, 2, "s5", LAYER_KWARGS["s5"]).eval()
    x = torch.randn(2, 32, 3)
    assert_rel(torch.compile(model, fullgraph=True)(x), model(x), 1e-5, "compiled model")


def test_layer_by_class_and_errors():
    model = SequenceModel(3, 5, 8, 1, lrnn.nn.LRU, {"d_state": 4})
    assert isinstance(model.backbone.blocks[0].layer, lrnn.nn.LRU)
    with pytest.raises(ValueError, match="unknown layer 'mamba9'"):
        SequenceModel(3, 5, 8, 1, "mamba9")
    with pytest.raises(ValueError, match="pooling"):
        SequenceModel(3, 5, 8, 1, "s5", pooling="max")
    with pytest.raises(ValueError, match="ffn"):
        SequenceModel(3, 5, 8, 1, "lru", ffn="swiglu")
    with pytest.raises(ValueError, match="norm"):
        SequenceModel(3, 5, 8, 1, "lru", norm="group")


def test_param_groups_gather_each_layer_recipe_once():
    model = SequenceModel(3, 5, 8, 2, "lru", LAYER_KWARGS["lru"])
    groups = model.param_groups(lr=1e-3, weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())          # every parameter, once
    nu = {id(b.layer.nu_log) for b in model.backbone.blocks}
    slow = [g for g in groups if any(id(p) in nu for p in g["params"])]
    assert len(slow) == 2 and all(g["lr"] == pytest.approx(5e-4) and g["weight_decay"] == 0 for g in slow)
    assert groups[-1]["lr"] == 1e-3 and groups[-1]["weight_decay"] == 0.1
    s5 = SequenceLM(11, 8, 1, "s5", LAYER_KWARGS["s5"]).param_groups(2e-3, 0.05, ssm_lr=1e-3)
    assert s5[0]["lr"] == 1e-3 and s5[0]["weight_decay"] == 0.0 and len(s5[0]["params"]) == 4
    torch.optim.AdamW(s5)
