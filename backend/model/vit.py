"""Vision Transformer for 28x28 digits, written out in full.

The whole model lives in this file, its config dataclass and presets in backend.model.config
(saved inside every checkpoint, so a checkpoint alone rebuilds its model; kept apart so the
command lines list the presets without importing torch): a small convolutional stem, patch
embedding by strided convolution, a learnable CLS token and position embeddings, pre-norm
transformer blocks whose attention weights can be returned, and a linear head.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from backend.model.config import DEFAULT_PRESET, PRESETS, ViTConfig  # noqa: F401  (re-exported)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p
        return x * keep / (1.0 - self.p)


class PatchEmbed(nn.Module):
    """(B, C, H, W) image -> (B, N, D) tokens via an optional conv stem and a strided conv."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        c, side = cfg.in_chans, cfg.img_size
        if cfg.stem_channels:
            s = cfg.stem_channels
            first = {2: 1, 4: 2}[cfg.stem_stride]
            # Two 3x3 convs give the tokens local stroke features, which ViTs on small data
            # lack, and shrink the image so the patch conv sees fewer, richer pixels.
            self.stem = nn.Sequential(
                nn.Conv2d(c, s, 3, stride=first, padding=1, bias=False), nn.BatchNorm2d(s), nn.GELU(),
                nn.Conv2d(s, 2 * s, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * s), nn.GELU(),
            )
            c, side = 2 * s, -(-side // cfg.stem_stride)
        else:
            self.stem = nn.Identity()
        # Non-overlapping patches when the grid divides the map (14 -> 7, 28 -> 4); otherwise
        # patches one pixel wider than their stride, padded, so that 7 -> 4 covers the map.
        stride = -(-side // cfg.grid)
        kernel, pad = (stride, 0) if side % cfg.grid == 0 else (stride + 1, 1)
        if (side + 2 * pad - kernel) // stride + 1 != cfg.grid:
            raise ValueError(f"patch_size {cfg.patch_size} does not fit a {side}x{side} stem output")
        self.proj = nn.Conv2d(c, cfg.embed_dim, kernel, stride=stride, padding=pad)
        self.tokens = cfg.grid**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.stem(x))  # (B, D, g, g)
        return x.reshape(-1, self.proj.out_channels, self.tokens).transpose(1, 2)  # (B, N, D), shapes fixed


class Attention(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.embed_dim % cfg.num_heads:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.embed_dim // cfg.num_heads
        self.tokens = cfg.grid**2 + 1
        self.dim = cfg.embed_dim
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.proj_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cls_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, D) tokens -> (B, N, D) output and (B, heads, N, N) attention; with cls_only,
        only the CLS token's query: (B, 1, D) and (B, heads, 1, N)."""
        # Shapes from the config (batch as -1), so the exported graph computes no shapes per call.
        # The linear layers see (B * N, D) rows: ONNX Runtime then adds the bias inside the matrix
        # product (Gemm) instead of in a pass of its own.
        n, h, hd, d = self.tokens, self.num_heads, self.head_dim, self.dim
        qkv = self.qkv(x.reshape(-1, d)).reshape(-1, n, 3, h, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, head_dim)
        if cls_only:
            q, n = q[:, :, :1], 1
        attn = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))  # (B, heads, n, N)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(-1, d)
        return self.proj_drop(self.proj(x)).reshape(-1, n, d), attn


class Mlp(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        hidden = int(cfg.embed_dim * cfg.mlp_ratio)
        self.dim = cfg.embed_dim
        self.fc1 = nn.Linear(cfg.embed_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, cfg.embed_dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, tokens: int) -> torch.Tensor:
        x = x.reshape(-1, self.dim)  # rows, as in Attention
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x))))).reshape(-1, tokens, self.dim)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)).

    With cls_only, only the CLS token goes on (all tokens are still its keys and values): the
    last block's other outputs are never read, and skipping them saves most of its work.
    """

    def __init__(self, cfg: ViTConfig, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.embed_dim)
        self.mlp = Mlp(cfg)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, cls_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        y, attn = self.attn(self.norm1(x), cls_only)
        x = (x[:, :1] if cls_only else x) + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x), 1 if cls_only else self.attn.tokens))
        return x, attn


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.img_size % cfg.patch_size or cfg.stem_stride not in (2, 4):
            raise ValueError("img_size must be divisible by patch_size, and stem_stride must be 2 or 4")
        self.cfg = cfg
        n_patches = cfg.grid**2
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, cfg.embed_dim))
        self.pos_drop = nn.Dropout(cfg.dropout)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(cfg, r) for r in rates)
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor, full: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 1, 28, 28) normalised images -> (B, D) CLS features and each block's attention,
        (B, heads, N+1, N+1); the last block's is only the CLS row, (B, heads, 1, N+1), unless full."""
        # [CLS, tokens] + pos_embed, as the tokens after a row of zeros plus the position
        # embeddings with CLS added to the first: the same sums, and in the exported graph one
        # padding instead of the ops that expand CLS to the batch's size.
        x = nn.functional.pad(self.patch_embed(x), (0, 0, 1, 0))  # (B, N+1, D)
        x = self.pos_drop(x + torch.cat([self.cls_token + self.pos_embed[:, :1], self.pos_embed[:, 1:]], dim=1))
        attns = []
        for i, blk in enumerate(self.blocks):
            x, a = blk(x, cls_only=not full and i == len(self.blocks) - 1)
            attns.append(a)
        return self.norm(x)[:, 0], attns

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        """Logits (B, num_classes); with return_attn also attention (B, depth, heads, N+1, N+1)."""
        feats, attns = self.forward_features(x, full=return_attn)
        logits = self.head(feats)
        if return_attn:
            return logits, torch.stack(attns, dim=1)
        return logits


def attention_rollout(attn: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) of the CLS token over the patch grid.

    attn: (B, depth, heads, N+1, N+1). Returns (B, g, g) in [0, 1], max-normalised per image.
    """
    return rollout(list(attn.mean(dim=2).unbind(1)))


def rollout(layers: list[torch.Tensor]) -> torch.Tensor:
    """attention_rollout from each block's attention with its heads averaged, (B, N+1, N+1),
    the last block's perhaps only its CLS row, (B, 1, N+1): the residual path is added as
    identity and rows renormalised, then the layers are multiplied together, from the last
    (the CLS row carried back through the others)."""
    eye = torch.eye(layers[0].shape[-1], device=layers[0].device, dtype=layers[0].dtype)
    result = None
    for a in reversed(layers):
        a = a + eye[: a.shape[-2]]
        a = a / a.sum(dim=-1, keepdim=True)
        result = a[:, :1] if result is None else result @ a
    return _cls_to_grid(result[:, 0, 1:])


def last_layer_cls_attention(attn: torch.Tensor) -> torch.Tensor:
    """CLS-to-patch attention of the last block, heads averaged: (B, g, g) in [0, 1]."""
    return _cls_to_grid(attn[:, -1].mean(dim=1)[:, 0, 1:])


def _cls_to_grid(cls_row: torch.Tensor) -> torch.Tensor:
    g = int(math.isqrt(cls_row.shape[-1]))
    m = cls_row.reshape(-1, g, g)
    return m / m.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class InferenceHead(nn.Module):
    """The model plus its post-processing, as one graph (what ONNX export traces).

    (B, 1, 28, 28) normalised images -> logits (B, 10), probs (B, 10) float32, rollout (B, g, g)
    and attn_last (B, g, g) in [0, 1]. The logits are divided by the config's calibrated
    temperature, so the probabilities mean what they say (backend.training.calibrate). The
    blocks' full attention is not an output: ONNX Runtime computes every output of a graph,
    fetched or not, and stacking and copying it took 4 % of the model's time.
    """

    OUTPUTS = ("logits", "probs", "rollout", "attn_last")

    def __init__(self, model: VisionTransformer):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats, attns = self.model.forward_features(x)
        logits = self.model.head(feats)
        with torch.autocast(x.device.type, enabled=False):  # post-processing in float32
            logits = _float32(logits) / self.model.cfg.temperature
            means = [_float32(a).mean(dim=1) for a in attns]  # (B, N+1, N+1) per block, heads averaged
            return logits, logits.softmax(dim=1), rollout(means), _cls_to_grid(means[-1][:, 0, 1:])


def _float32(t: torch.Tensor) -> torch.Tensor:
    """t in float32 (a no-op, not a copy in the exported graph, when it is already)."""
    return t if t.dtype == torch.float32 else t.float()
