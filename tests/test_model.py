import pytest
import torch

from backend.model.vit import (PRESETS, InferenceHead, ViTConfig, VisionTransformer, attention_rollout, count_parameters,
                               last_layer_cls_attention)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_shapes_and_attention_rows(preset):
    cfg = PRESETS[preset]
    model = VisionTransformer(cfg).eval()
    x = torch.randn(3, 1, 28, 28)
    logits, attn = model(x, return_attn=True)
    n = cfg.grid**2 + 1
    assert logits.shape == (3, 10)
    assert attn.shape == (3, cfg.depth, cfg.num_heads, n, n)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, cfg.depth, cfg.num_heads, n))
    maps = attention_rollout(attn), last_layer_cls_attention(attn)
    for m in maps:
        assert m.shape == (3, cfg.grid, cfg.grid)
        assert m.min() >= 0 and torch.allclose(m.amax(dim=(1, 2)), torch.ones(3))
    # Without return_attn, and in the exported head, the last block goes on for the CLS token
    # alone: the same logits and maps as the full model's.
    torch.testing.assert_close(model(x), logits)
    head_logits, _, *head_maps = InferenceHead(model)(x)
    torch.testing.assert_close(head_logits, logits / cfg.temperature)
    for m, h in zip(maps, head_maps):
        torch.testing.assert_close(h, m)


def test_presets_fit_the_parameter_budget():
    sizes = {name: count_parameters(VisionTransformer(cfg)) for name, cfg in PRESETS.items()}
    assert sizes["fast"] < sizes["accurate"] <= 1_000_000


def test_config_round_trip_and_validation():
    cfg = ViTConfig(embed_dim=48, depth=2, num_heads=3)
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        ViTConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError):
        VisionTransformer(ViTConfig(embed_dim=50, num_heads=4))


def test_plain_patch_embedding_without_stem():
    cfg = ViTConfig(stem_channels=0, patch_size=7, embed_dim=32, depth=1, num_heads=2)
    logits, attn = VisionTransformer(cfg)(torch.randn(2, 1, 28, 28), return_attn=True)
    assert logits.shape == (2, 10) and attn.shape == (2, 1, 2, 17, 17)


@pytest.mark.parametrize("stem_stride, patch, grid", [(2, 4, 7), (4, 4, 7), (4, 7, 4), (2, 14, 2)])
def test_stem_and_patch_conv_give_the_token_grid(stem_stride, patch, grid):
    cfg = ViTConfig(stem_channels=4, stem_stride=stem_stride, patch_size=patch, embed_dim=16, depth=1, num_heads=2)
    assert cfg.grid == grid
    _, attn = VisionTransformer(cfg)(torch.randn(2, 1, 28, 28), return_attn=True)
    assert attn.shape == (2, 1, 2, grid**2 + 1, grid**2 + 1)
    with pytest.raises(ValueError):
        VisionTransformer(ViTConfig(stem_stride=3))
