"""Stacked sequence models built from any lrnn.nn layer chosen by name (``lrnn.nn.LAYERS``).

    SequenceBackbone   encoder -> N x Block -> final norm            (B, L, d_input) -> (B, L, d_model)
    Block              [norm] -> layer -> feed-forward (gelu | glu | half_glu | mlp) -> dropout
                       -> residual [-> norm when post-norm]
    SequenceModel      backbone -> pooling (mean | last | none) -> linear head
                       (classification logits or regression outputs)
    SequenceLM         token embedding -> backbone -> tied (or separate) vocabulary projection

Every model has ``initial_state(batch)`` and ``step(x_t, state)``; the state is a tuple with one
entry per layer, and stepping through a sequence equals the parallel forward (in eval mode: dropout
and batch statistics are per-batch in training). Feed-forward variants follow the references:
``half_glu`` is S5's half_glu1 (x * sigmoid(W x) after GELU), ``glu`` minimal-LRU's
out1(x) * sigmoid(out2(x)) after GELU.

Not here: data, training loops, the layers themselves.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .. import nn as lnn


class _Norm(nn.Module):
    """Token-wise normalization of the last dim: "layer", "batch" (statistics over batch and time,
    as BatchNorm1d on (B, H, L)), "rms" or None."""

    def __init__(self, d: int, kind: str | None):
        super().__init__()
        makers = {"layer": lambda: nn.LayerNorm(d), "batch": lambda: nn.BatchNorm1d(d),
                  "rms": lambda: nn.RMSNorm(d), None: nn.Identity}
        if kind not in makers:
            raise ValueError(f"norm must be one of {list(makers)}, got {kind!r}")
        self.norm = makers[kind]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.norm, nn.BatchNorm1d):
            return self.norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        return self.norm(x)


class _FeedForward(nn.Module):
    """The pointwise part of a block after the sequence layer."""

    KINDS = ("gelu", "glu", "half_glu", "mlp")

    def __init__(self, d: int, kind: str, dropout: float, expand: int = 4):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"ffn must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.drop = nn.Dropout(dropout)
        if kind == "glu":
            self.out1, self.out2 = nn.Linear(d, d), nn.Linear(d, d)
        elif kind == "half_glu":
            self.out2 = nn.Linear(d, d)
        elif kind == "mlp":
            self.fc1, self.fc2 = nn.Linear(d, expand * d), nn.Linear(expand * d, d)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlp":
            return self.drop(self.fc2(F.gelu(self.fc1(y))))
        x = self.drop(F.gelu(y))
        if self.kind == "glu":
            x = self.drop(self.out1(x) * torch.sigmoid(self.out2(x)))
        elif self.kind == "half_glu":
            x = self.drop(x * torch.sigmoid(self.out2(x)))
        return x


def make_layer(layer: str | type, d_model: int, **kwargs) -> nn.Module:
    """Instantiate a sequence layer by registry name (``lrnn.nn.LAYERS``) or class."""
    if isinstance(layer, str):
        if layer not in lnn.LAYERS:
            raise ValueError(f"unknown layer {layer!r}; registered: {sorted(lnn.LAYERS)}")
        layer = lnn.LAYERS[layer]
    return layer(d_model, **kwargs)


def param_groups(model: nn.Module, lr: float, weight_decay: float, **layer_kwargs) -> list[dict]:
    """Optimizer groups for a model: every sub-module that defines ``param_groups`` (the layers
    whose reference recipe has special groups) contributes its own, called with
    ``(lr, weight_decay, **layer_kwargs)``; all other parameters form one group at ``lr`` with
    ``weight_decay``. Each parameter appears once."""
    groups, seen = [], set()
    for module in model.modules():
        if module is not model and hasattr(module, "param_groups") and not isinstance(
                module, (SequenceBackbone, SequenceModel, SequenceLM)):
            for g in module.param_groups(lr, weight_decay, **layer_kwargs):
                g["params"] = [p for p in g["params"] if id(p) not in seen]
                seen.update(id(p) for p in g["params"])
                groups.append(g)
    rest = [p for p in model.parameters() if id(p) not in seen]
    return groups + [{"params": rest, "lr": lr, "weight_decay": weight_decay}]


class Block(nn.Module):
    """One residual block around a sequence layer, (B, L, d_model) -> (B, L, d_model)."""

    def __init__(self, d_model: int, layer: str | type = "s5", layer_kwargs: dict | None = None, *,
                 norm: str | None = "layer", prenorm: bool = True, ffn: str = "half_glu", dropout: float = 0.0):
        super().__init__()
        self.prenorm = prenorm
        self.norm = _Norm(d_model, norm)
        self.layer = make_layer(layer, d_model, **(layer_kwargs or {}))
        self.ffn = _FeedForward(d_model, ffn, dropout)

    def forward(self, x: torch.Tensor, state=None, *, return_state: bool = False):
        z = self.norm(x) if self.prenorm else x
        if state is None and not return_state:
            y, new_state = self.layer(z), None
        else:
            y, new_state = self.layer(z, state, return_state=True)
        x = x + self.ffn(y)
        if not self.prenorm:
            x = self.norm(x)
        return (x, new_state) if return_state else x

    def step(self, x_t: torch.Tensor, state):
        z = self.norm(x_t) if self.prenorm else x_t
        y, state = self.layer.step(z, state)
        x_t = x_t + self.ffn(y)
        if not self.prenorm:
            x_t = self.norm(x_t)
        return x_t, state


class SequenceBackbone(nn.Module):
    """Encoder, ``n_layers`` blocks and a final norm (pre-norm only): (B, L, d_input) -> (B, L, d_model),
    or token ids (B, L) -> (B, L, d_model) when ``vocab_size`` is given."""

    def __init__(self, d_input: int | None, d_model: int, n_layers: int, layer: str | type = "s5",
                 layer_kwargs: dict | None = None, *, vocab_size: int | None = None, norm: str | None = "layer",
                 prenorm: bool = True, ffn: str = "half_glu", dropout: float = 0.0):
        super().__init__()
        if (d_input is None) == (vocab_size is None):
            raise ValueError("SequenceBackbone: give exactly one of d_input (features) or vocab_size (tokens)")
        self.encoder = nn.Embedding(vocab_size, d_model) if vocab_size else nn.Linear(d_input, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, layer, layer_kwargs, norm=norm, prenorm=prenorm, ffn=ffn, dropout=dropout)
            for _ in range(n_layers))
        self.final_norm = _Norm(d_model, norm) if prenorm else nn.Identity()

    def initial_state(self, batch_size: int, device=None, dtype=None) -> tuple:
        return tuple(b.layer.initial_state(batch_size, device=device, dtype=dtype) for b in self.blocks)

    def param_groups(self, lr: float, weight_decay: float, **layer_kwargs) -> list[dict]:
        return param_groups(self, lr, weight_decay, **layer_kwargs)

    def forward(self, x: torch.Tensor, state: tuple | None = None, *, return_state: bool = False):
        h = self.encoder(x)
        states = []
        for i, block in enumerate(self.blocks):
            if state is None and not return_state:
                h = block(h)
            else:
                h, s = block(h, None if state is None else state[i], return_state=True)
                states.append(s)
        h = self.final_norm(h)
        return (h, tuple(states)) if return_state else h

    def step(self, x_t: torch.Tensor, state: tuple):
        h = self.encoder(x_t)
        new = []
        for block, s in zip(self.blocks, state):
            h, s = block.step(h, s)
            new.append(s)
        return self.final_norm(h), tuple(new)


class SequenceModel(nn.Module):
    """Classification / regression over sequences: (B, L, d_input) -> (B, d_output) with pooling
    "mean" or "last", or (B, L, d_output) with pooling "none". Classification returns logits.

    ``step`` returns the head applied to the current token, which is the pooled output of the prefix
    for pooling "last" and the per-token output for "none" (mean pooling has no O(1) step form here).
    """

    def __init__(self, d_input: int, d_output: int, d_model: int = 128, n_layers: int = 4,
                 layer: str | type = "s5", layer_kwargs: dict | None = None, *, pooling: str = "mean",
                 norm: str | None = "layer", prenorm: bool = True, ffn: str = "half_glu", dropout: float = 0.0):
        super().__init__()
        if pooling not in ("mean", "last", "none"):
            raise ValueError(f"SequenceModel: pooling must be 'mean', 'last' or 'none', got {pooling!r}")
        self.pooling = pooling
        self.backbone = SequenceBackbone(d_input, d_model, n_layers, layer, layer_kwargs, norm=norm,
                                         prenorm=prenorm, ffn=ffn, dropout=dropout)
        self.head = nn.Linear(d_model, d_output)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> tuple:
        return self.backbone.initial_state(batch_size, device, dtype)

    def param_groups(self, lr: float, weight_decay: float, **layer_kwargs) -> list[dict]:
        return param_groups(self, lr, weight_decay, **layer_kwargs)

    def forward(self, x: torch.Tensor, state: tuple | None = None, *, return_state: bool = False):
        out = self.backbone(x, state, return_state=return_state)
        h, new_state = out if return_state else (out, None)
        if self.pooling == "mean":
            h = h.mean(1)
        elif self.pooling == "last":
            h = h[:, -1]
        y = self.head(h)
        return (y, new_state) if return_state else y

    def step(self, x_t: torch.Tensor, state: tuple):
        if self.pooling == "mean":
            raise ValueError("SequenceModel.step: mean pooling has no per-token form; use pooling 'last' or 'none'")
        h, state = self.backbone.step(x_t, state)
        return self.head(h), state


class SequenceLM(nn.Module):
    """Causal language model: token ids (B, L) -> next-token logits (B, L, vocab_size); ``step``
    takes ids (B,) and returns logits (B, vocab_size). Use causal layers (no bidirectional)."""

    def __init__(self, vocab_size: int, d_model: int = 256, n_layers: int = 4, layer: str | type = "s5",
                 layer_kwargs: dict | None = None, *, norm: str | None = "layer", ffn: str = "half_glu",
                 dropout: float = 0.0, tie_weights: bool = True):
        super().__init__()
        self.backbone = SequenceBackbone(None, d_model, n_layers, layer, layer_kwargs, vocab_size=vocab_size,
                                         norm=norm, prenorm=True, ffn=ffn, dropout=dropout)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.backbone.encoder.weight

    def initial_state(self, batch_size: int, device=None, dtype=None) -> tuple:
        return self.backbone.initial_state(batch_size, device, dtype)

    def param_groups(self, lr: float, weight_decay: float, **layer_kwargs) -> list[dict]:
        return param_groups(self, lr, weight_decay, **layer_kwargs)

    def forward(self, tokens: torch.Tensor, state: tuple | None = None, *, return_state: bool = False):
        out = self.backbone(tokens, state, return_state=return_state)
        h, new_state = out if return_state else (out, None)
        logits = self.lm_head(h)
        return (logits, new_state) if return_state else logits

    def step(self, token: torch.Tensor, state: tuple):
        h, state = self.backbone.step(token, state)
        return self.lm_head(h), state
