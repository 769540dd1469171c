"""lrnn.models.EventClassifier: the Event-SSM / S7 stacked classifier for event streams
(models.md §4.2): embedding of event addresses (token -1 = padding -> zero vector) -> stages of
event sequence layers (the first layer of each stage subsamples with `pooling_stride`, widths
grow by `state_expansion_factor`) -> pooling head ("pool": masked mean over real events,
"timepool": dt-weighted mean, "last": the last real event) -> linear classifier.

Each sequence layer is the reference's: prenorm -> SSM (EventSSM or S7) -> x * sigmoid(W drop(gelu(x)))
-> dropout -> residual (skip pooled like the SSM, Linear when the width changes) -> postnorm.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..nn.event_ssm import EventSSM, event_pool
from ..nn.s7 import S7

SSMS = {"event_ssm": EventSSM, "s7": S7}


class EventSequenceLayer(nn.Module):
    """One residual layer around an event SSM; returns (y, dt) with dt pooled like y."""

    def __init__(self, ssm: str, d_in: int, d_out: int, d_ssm: int, *, dropout: float = 0.0, prenorm: bool = True,
                 pooling_stride: int = 1, pooling_mode: str = "last", dt_convention: str = "next", **ssm_kwargs):
        super().__init__()
        self.prenorm, self.stride, self.pooling_mode = prenorm, pooling_stride, pooling_mode
        self.dt_convention = dt_convention
        self.norm = nn.LayerNorm(d_in if prenorm else d_out)
        self.ssm = SSMS[ssm](d_in, d_ssm, d_out, stride=pooling_stride, pooling_mode=pooling_mode,
                             dt_convention=dt_convention, **ssm_kwargs)
        self.gate = nn.Linear(d_out, d_out)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()

    def forward(self, x: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = x
        if self.prenorm:
            x = self.norm(x)
        y, dt_out = self.ssm(x, dt, return_dt=True)
        y = y * torch.sigmoid(self.gate(self.drop(F.gelu(y))))
        y = self.drop(y)
        if self.stride > 1:
            skip, _ = event_pool(skip, dt, self.stride, self.pooling_mode, self.dt_convention)
        y = self.skip(skip) + y
        if not self.prenorm:
            y = self.norm(y)
        return y, dt_out


class EventClassifier(nn.Module):
    """tokens (B, L) int64 (-1 = padding), dt (B, L) -> logits (B, num_classes).

    Args:
        num_embeddings: number of event addresses (e.g. 700 channels for SHD, 2*(128/ds)^2 for DVS).
        num_classes: classifier outputs.
        d_model: embedding width; d_ssm: states of the first stage.
        stages: number of stages; layers_per_stage: layers in each.
        pooling_stride, pooling_mode: subsampling in the first layer of each stage.
        state_expansion_factor: width and state growth per stage.
        head: "pool", "timepool" or "last".
        ssm: "event_ssm" or "s7"; remaining keyword arguments go to the SSM.
    """

    def __init__(self, num_embeddings: int, num_classes: int, d_model: int = 64, d_ssm: int = 64, *,
                 stages: int = 2, layers_per_stage: int = 2, pooling_stride: int = 1, pooling_mode: str = "last",
                 state_expansion_factor: int = 1, head: str = "pool", ssm: str = "event_ssm", dropout: float = 0.0,
                 prenorm: bool = True, dt_convention: str = "next", **ssm_kwargs):
        super().__init__()
        if head not in ("pool", "timepool", "last"):
            raise ValueError(f"head must be 'pool', 'timepool' or 'last', got {head!r}")
        if ssm not in SSMS:
            raise ValueError(f"ssm must be one of {sorted(SSMS)}, got {ssm!r}")
        self.head, self.num_embeddings = head, num_embeddings
        # one extra row, kept at zero, for the padding token -1
        self.encoder = nn.Embedding(num_embeddings + 1, d_model, padding_idx=num_embeddings)
        layers, d_in = [], d_model
        for s in range(stages):
            d_out = d_model * state_expansion_factor ** s
            ds = d_ssm * state_expansion_factor ** s
            for i in range(layers_per_stage):
                layers.append(EventSequenceLayer(ssm, d_in if i == 0 else d_out, d_out, ds, dropout=dropout,
                                                 prenorm=prenorm, pooling_stride=pooling_stride if i == 0 else 1,
                                                 pooling_mode=pooling_mode, dt_convention=dt_convention,
                                                 **ssm_kwargs))
            d_in = d_out
        self.layers = nn.ModuleList(layers)
        self.total_stride = pooling_stride ** stages
        self.decoder = nn.Linear(d_in, num_classes)

    def forward(self, tokens: torch.Tensor, dt: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`lengths` (B,) counts the real events of each stream (default: tokens != -1)."""
        if lengths is None:
            lengths = (tokens >= 0).sum(1)
        idx = torch.where(tokens < 0, torch.full_like(tokens, self.num_embeddings), tokens)
        x = self.encoder(idx)
        for layer in self.layers:
            x, dt = layer(x, dt)
        n = torch.div(lengths, self.total_stride, rounding_mode="floor").clamp(min=1, max=x.shape[1])
        valid = (torch.arange(x.shape[1], device=x.device)[None] < n[:, None]).to(x.dtype)
        if self.head == "pool":
            z = (x * valid[..., None]).sum(1) / n[:, None].to(x.dtype)
        elif self.head == "timepool":
            w = dt.to(x.dtype) * valid
            z = (x * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-6)
        else:
            z = x[torch.arange(x.shape[0], device=x.device), n - 1]
        return self.decoder(z)
