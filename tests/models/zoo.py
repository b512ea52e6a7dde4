"""The export zoo: small random-initialised models of the architectures users export,
exported with `torch.onnx.export` in the test (no download).

Each `Arch` builds its module from a tiny config (hidden 32, 1-2 layers or blocks a
stage, 8-64 channels, sequence 8, images 32x32 unless the architecture needs more;
timm's own test_* configs; Inception-v3 keeps its graph at 1/8 of its widths and
takes 75x75, EfficientFormer 224x224) and makes example inputs for any batch.
`export` writes the ONNX file
with the TorchScript exporter (`dynamo=False`, opset 14) or the dynamo exporter
(`dynamo=True`, opset 18), with a dynamic batch axis.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from _torchvision import import_timm, import_torchvision

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SEQ = 8
IMAGE = 32
VOCAB = 100


@dataclass(frozen=True)
class Arch:
    name: str
    build: Callable[[], object]  # () -> torch.nn.Module in eval mode
    inputs: Callable[[int, int], dict[str, np.ndarray]]  # (batch, seed) -> feeds
    outputs: tuple[str, ...] = ("output",)


def _tokens(*names: str) -> Callable[[int, int], dict[str, np.ndarray]]:
    """input_ids (never the pad id 1 nor 0) and an attention mask with padding in
    the last row."""

    def make(batch: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        feeds = {"input_ids": rng.integers(2, VOCAB, (batch, SEQ), dtype=np.int64)}
        if "attention_mask" in names:
            mask = np.ones((batch, SEQ), np.int64)
            mask[-1, SEQ - 3:] = 0
            feeds["attention_mask"] = mask
        return feeds

    return make


def _image(channels: int = 3, size: int = IMAGE) -> Callable[[int, int], dict[str, np.ndarray]]:
    def make(batch: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {"pixel_values": rng.standard_normal((batch, channels, size, size)).astype(np.float32)}

    return make


def _mel(bins: int, frames: int) -> Callable[[int, int], dict[str, np.ndarray]]:
    def make(batch: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {"input_features": rng.standard_normal((batch, bins, frames)).astype(np.float32)}

    return make


def _import_transformers():
    import importlib

    import_torchvision()  # transformers imports torchvision when it is installed
    return importlib.import_module("transformers")


def _hf(model_cls: str, config_cls: str, names: tuple[str, ...] = ("input_ids", "attention_mask"),
        **config) -> Callable[[], object]:
    def build():
        import torch

        transformers = _import_transformers()
        torch.manual_seed(0)
        cfg = getattr(transformers, config_cls)(**config)
        cfg._attn_implementation = "eager"
        model = getattr(transformers, model_cls)(cfg)
        return _FirstOutput(model, names).eval()

    return build


def _hf_encoder(model_cls: str, config_cls: str,
                names: tuple[str, ...] = ("input_ids", "attention_mask"),
                **config) -> Callable[[], object]:
    """The encoder of an encoder-decoder model (`get_encoder()`)."""
    def build():
        import torch

        transformers = _import_transformers()
        torch.manual_seed(0)
        cfg = getattr(transformers, config_cls)(**config)
        cfg._attn_implementation = "eager"
        return _FirstOutput(getattr(transformers, model_cls)(cfg).get_encoder(), names).eval()

    return build


def _whisper_encoder():
    import torch

    transformers = _import_transformers()
    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(
        d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
        max_source_positions=SEQ, max_target_positions=SEQ, vocab_size=VOCAB, pad_token_id=1,
        bos_token_id=2, eos_token_id=3, decoder_start_token_id=2)
    cfg._attn_implementation = "eager"
    encoder = transformers.WhisperModel(cfg).get_encoder()
    return _FirstOutput(encoder, ("input_features",)).eval()


def _FirstOutput(model, names: tuple[str, ...]):
    """The model called with keyword inputs `names`; its last hidden state as a
    plain tensor output."""
    import torch

    class FirstOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(**dict(zip(names, args, strict=True)), return_dict=True)[0]

    return FirstOutput()


_BERT_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=64)


def _trained_like(model):
    """Normalization parameters and statistics away from their initial 1 / 0 (as
    training leaves them): initial ones can make outputs vanish (zero-initialised
    last BN of a residual block), which would check nothing."""
    import torch

    g = torch.Generator().manual_seed(1)
    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, norms):
                continue
            for key, around_one in (("weight", True), ("running_var", True),
                                    ("bias", False), ("running_mean", False)):
                t = getattr(m, key, None)
                if isinstance(t, torch.Tensor):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5 if around_one
                            else torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()


def _torchvision(build: Callable[[object], object]) -> Callable[[], object]:
    def make():
        import torch

        torch.manual_seed(0)
        return _trained_like(build(import_torchvision()))

    return make


def _timm(name: str, **kwargs) -> Callable[[], object]:
    def make():
        import torch

        torch.manual_seed(0)
        return _trained_like(import_timm().create_model(name, pretrained=False, **kwargs))

    return make


def _group_norm_resnet(tv):
    import torch

    return tv.models.resnet18(num_classes=10,
                              norm_layer=lambda c: torch.nn.GroupNorm(4, c))


def _swin(tv):
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2],
                           window_size=[4, 4], num_classes=10)


def _densenet(tv):
    from torchvision.models.densenet import DenseNet

    # densenet121's blocks (bottleneck, transition with average pool), narrow and shallow
    return DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2,
                    num_classes=10)


def _inception_v3(tv):
    """inception_v3's graph at 1/8 of its widths (every conv's channels but the
    image's 3 divided by 8, so the branch concatenations still add up); 75x75 is the
    smallest input it takes."""
    import torch
    from torchvision.models import inception

    class NarrowConv(inception.BasicConv2d):
        def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
            super().__init__(in_channels if in_channels == 3 else in_channels // 8,
                             out_channels // 8, **kwargs)

    def narrow(block):
        return lambda *args, **kwargs: block(*args, conv_block=NarrowConv, **kwargs)

    blocks = [NarrowConv] + [narrow(b) for b in (
        inception.InceptionA, inception.InceptionB, inception.InceptionC, inception.InceptionD,
        inception.InceptionE, inception.InceptionAux)]
    model = inception.Inception3(num_classes=10, aux_logits=False, init_weights=False,
                                 inception_blocks=blocks)
    model.fc = torch.nn.Linear(2048 // 8, 10)
    return model


def _regnet(tv):
    from torchvision.models.regnet import BlockParams, RegNet

    return RegNet(BlockParams.from_init_params(depth=2, w_0=8, w_a=8.0, w_m=2.0,
                                               group_width=8, se_ratio=0.25),
                  stem_width=8, num_classes=10)


def _efficientnet_b0(tv):
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

    setting, last = _efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
    return EfficientNet(setting, dropout=0.2, last_channel=last, num_classes=10)


def _poolformer():
    """timm's poolformer_s12 (average-pool token mixer, GroupNorm), 1 block a stage."""
    import torch
    from timm.models.metaformer import GroupNorm1, MetaFormer

    import_timm()
    torch.manual_seed(0)
    return _trained_like(MetaFormer(
        depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), downsample_norm=None,
        mlp_act=torch.nn.GELU, mlp_bias=True, norm_layers=GroupNorm1,
        layer_scale_init_values=1e-5, res_scale_init_values=None, use_mlp_head=False,
        num_classes=10))


def _hf_vision(model_cls: str, config_cls: str, **config) -> Callable[[], object]:
    """A transformers vision model: normalizations randomised as `_trained_like` does."""
    build = _hf(model_cls, config_cls, ("pixel_values",), **config)
    return lambda: _trained_like(build())


def _wav2vec2_features(batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input_values": rng.standard_normal((batch, 400)).astype(np.float32)}


ZOO: dict[str, Arch] = {a.name: a for a in [
    Arch("bert", _hf("BertModel", "BertConfig", **_BERT_LIKE),
         _tokens("input_ids", "attention_mask")),
    Arch("distilbert", _hf("DistilBertModel", "DistilBertConfig", dim=32, n_layers=2,
                           n_heads=2, hidden_dim=64, vocab_size=VOCAB,
                           max_position_embeddings=64),
         _tokens("input_ids", "attention_mask")),
    Arch("roberta", _hf("RobertaModel", "RobertaConfig", **_BERT_LIKE),
         _tokens("input_ids", "attention_mask")),
    Arch("albert", _hf("AlbertModel", "AlbertConfig", embedding_size=16, **_BERT_LIKE),
         _tokens("input_ids", "attention_mask")),
    Arch("electra", _hf("ElectraModel", "ElectraConfig", embedding_size=16, **_BERT_LIKE),
         _tokens("input_ids", "attention_mask")),
    Arch("gpt2", _hf("GPT2Model", "GPT2Config", n_embd=32, n_layer=2, n_head=2,
                     n_positions=64, vocab_size=VOCAB, use_cache=False, bos_token_id=2,
                     eos_token_id=3),
         _tokens("input_ids", "attention_mask")),
    Arch("mobilebert", _hf("MobileBertModel", "MobileBertConfig", hidden_size=32,
                           embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
                           num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                           num_feedforward_networks=2, vocab_size=VOCAB,
                           max_position_embeddings=64),
         _tokens("input_ids", "attention_mask")),
    Arch("t5_encoder", _hf("T5EncoderModel", "T5Config", d_model=32, d_kv=16, d_ff=64,
                           num_layers=2, num_heads=2, vocab_size=VOCAB),
         _tokens("input_ids", "attention_mask")),
    Arch("vit", _hf("ViTModel", "ViTConfig", ("pixel_values",), image_size=IMAGE, patch_size=8, hidden_size=32,
                    num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
         _image()),
    Arch("whisper_encoder", _whisper_encoder, _mel(16, 2 * SEQ)),
    Arch("clip_text", _hf("CLIPTextModel", "CLIPTextConfig", hidden_size=32,
                          intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                          vocab_size=VOCAB, max_position_embeddings=64, bos_token_id=2,
                          eos_token_id=3, pad_token_id=1),
         _tokens("input_ids", "attention_mask")),
    Arch("tv_resnet18", _torchvision(lambda tv: tv.models.resnet18(num_classes=10)), _image()),
    Arch("tv_mobilenet_v3_small",
         _torchvision(lambda tv: tv.models.mobilenet_v3_small(num_classes=10)), _image()),
    Arch("tv_resnet18_groupnorm", _torchvision(_group_norm_resnet), _image()),
    Arch("tv_swin", _torchvision(_swin), _image()),
    Arch("timm_vit_tiny", _timm("vit_tiny_patch16_224", img_size=IMAGE, patch_size=8, depth=2,
                                num_classes=10), _image()),
    Arch("timm_efficientnet", _timm("test_efficientnet", num_classes=10), _image()),
    Arch("timm_convnext", _timm("test_convnext", num_classes=10), _image()),
    Arch("tv_densenet", _torchvision(_densenet), _image()),
    Arch("tv_inception_v3", _torchvision(_inception_v3), _image(size=75)),
    Arch("tv_shufflenet_v2", _torchvision(lambda tv: tv.models.ShuffleNetV2(
        [1, 1, 1], [8, 16, 32, 64, 64], num_classes=10)), _image()),
    Arch("tv_squeezenet", _torchvision(lambda tv: tv.models.squeezenet1_1(num_classes=10)),
         _image(size=48)),
    Arch("tv_mobilenet_v2", _torchvision(lambda tv: tv.models.mobilenet_v2(
        num_classes=10, width_mult=0.25)), _image()),
    Arch("tv_regnet", _torchvision(_regnet), _image()),
    Arch("tv_efficientnet_b0", _torchvision(_efficientnet_b0), _image()),
    # its attention biases are sized for the 7x7 last stage of a 224x224 input
    Arch("timm_efficientformer", _timm("efficientformer_l1", depths=(1, 1, 1, 2),
                                       embed_dims=(8, 16, 24, 32), num_vit=1,
                                       num_classes=10), _image(size=224)),
    Arch("timm_poolformer", _poolformer, _image()),
    Arch("timm_mobilevit", _timm("mobilevit_xxs", num_classes=10), _image(size=64)),
    Arch("timm_levit", _timm("levit_128s", img_size=IMAGE, embed_dim=(16, 24, 32),
                             key_dim=8, depth=(1, 1, 1), num_heads=(2, 2, 2),
                             num_classes=10), _image()),
    # distillation token and two heads averaged
    Arch("timm_deit_distilled", _timm("deit_tiny_distilled_patch16_224", img_size=IMAGE,
                                      patch_size=8, depth=2, num_classes=10), _image()),
    Arch("deberta_v2", _hf("DebertaV2Model", "DebertaV2Config", relative_attention=True,
                           pos_att_type=["p2c", "c2p"], position_buckets=4,
                           max_relative_positions=16, **_BERT_LIKE),
         _tokens("input_ids", "attention_mask")),
    Arch("bart_encoder", _hf_encoder("BartModel", "BartConfig", d_model=32, encoder_layers=2,
                                     decoder_layers=1, encoder_attention_heads=2,
                                     decoder_attention_heads=2, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, vocab_size=VOCAB,
                                     max_position_embeddings=64, pad_token_id=1,
                                     bos_token_id=2, eos_token_id=3),
         _tokens("input_ids", "attention_mask")),
    Arch("segformer", _hf_vision("SegformerModel", "SegformerConfig", num_encoder_blocks=2,
                                 depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                                 patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
                                 mlp_ratios=[2, 2], decoder_hidden_size=16), _image()),
    Arch("convnextv2", _hf_vision("ConvNextV2Model", "ConvNextV2Config", num_stages=2,
                                  hidden_sizes=[8, 16], depths=[1, 1]), _image()),
    Arch("wav2vec2_features", _hf("Wav2Vec2Model", "Wav2Vec2Config", ("input_values",),
                                  hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2),
                                  conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                                  num_conv_pos_embedding_groups=4, feat_extract_norm="layer"),
         _wav2vec2_features),
]}

EXPORTERS = {"torchscript": dict(dynamo=False, opset_version=14),
             "dynamo": dict(dynamo=True, opset_version=18)}

# (architecture, exporter) whose shape subgraphs compute a value from the batch in a
# way qcc cannot yet compute at run time: DeBERTa-v2's relative-position Tile repeats
# by the batch (qcc has no run-time Tile), so the frontend refuses a symbolic batch
# with one message naming the Tile node and --input-shape; the zoo imports it at each
# batch. Every other export (the class tokens, token-type ids and masks of the
# transformers, Swin's Range and Wav2Vec2's Expand over the batch) imports once with
# a symbolic batch, those values computed at run time.
STATIC_BATCH = frozenset({("deberta_v2", exporter) for exporter in EXPORTERS})


def export(arch: Arch, exporter: str, path: str, batch: int = 2) -> None:
    """Write `arch` as ONNX to `path`, batch axis dynamic where the exporter allows."""
    import torch

    model = arch.build()
    feeds = arch.inputs(batch, 0)
    names = list(feeds)
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    kwargs = EXPORTERS[exporter]
    dynamic = {n: {0: "batch"} for n in [*names, *arch.outputs]}
    if kwargs["dynamo"]:
        batch_dim = torch.export.Dim("batch", min=1, max=1024)
        shapes: tuple = tuple({0: batch_dim} for _ in names)
        if _takes_varargs(model):
            shapes = (shapes,)
        extra = dict(dynamic_shapes=shapes, optimize=True, external_data=False)
    else:
        extra = dict(dynamic_axes=dynamic)
    with torch.no_grad():
        torch.onnx.export(model, args, path, input_names=names,
                          output_names=list(arch.outputs), **kwargs, **extra)


def _takes_varargs(model) -> bool:
    import inspect

    params = inspect.signature(model.forward).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
