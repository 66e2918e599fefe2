"""Networks outside `predict_zoo.py`'s zoo, with operations the zoo lacks, as a new user would
bring them: `memprobe predict` is checked on these without any tuning to them.

    python benchmarks/predict_zoo.py --scan DIR/scan.json --zoo benchmarks/zoo_outside.py

- mobilenet: depthwise-separable convolutions (grouped 3x3, 1x1), batch norm, ReLU6, 32 px;
- llama: a LLaMA-style decoder from transformers' config (RMSNorm, rotary positions, a gated
  SiLU MLP), 4 layers, width 256, sequence 128;
- t5: an encoder-decoder (T5: relative attention bias, RMS-style layer norm), 3+3 layers,
  width 256, sequences 128 and 32;
- unet: a small convolutional encoder-decoder with group norm, SiLU, transposed convolutions
  and skip concatenations, 64 px.
"""

from __future__ import annotations

SEQ = 128


def _quiet() -> None:
    try:
        from transformers.utils import logging

        logging.set_verbosity_error()
    except Exception:
        pass


def mobilenet(batch: int = 16):
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)

    def block(cin, cout, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())

    model = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(),
                          block(32, 64, 1), block(64, 128, 2), block(128, 128, 1), block(128, 256, 2),
                          block(256, 256, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    return model, x, (lambda out: F.cross_entropy(out, y))


def llama(batch: int = 16):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    _quiet()
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=4, vocab_size=8000, max_position_embeddings=SEQ)
    model = LlamaForCausalLM(cfg)
    ids = torch.randint(0, cfg.vocab_size, (batch, SEQ))
    return model, {"input_ids": ids, "labels": ids}


def t5(batch: int = 16):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    _quiet()
    torch.manual_seed(0)
    cfg = T5Config(d_model=256, d_ff=1024, d_kv=64, num_layers=3, num_decoder_layers=3, num_heads=4,
                   vocab_size=8000, decoder_start_token_id=0, pad_token_id=0)
    model = T5ForConditionalGeneration(cfg)
    ids = torch.randint(0, cfg.vocab_size, (batch, SEQ))
    labels = torch.randint(0, cfg.vocab_size, (batch, 32))
    return model, {"input_ids": ids, "labels": labels}


def unet(batch: int = 16):
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)

    def conv(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.d1, self.d2, self.mid = conv(3, 32), conv(32, 64), conv(64, 128)
            self.up2, self.u2 = nn.ConvTranspose2d(128, 64, 2, 2), conv(128, 64)
            self.up1, self.u1 = nn.ConvTranspose2d(64, 32, 2, 2), conv(64, 32)
            self.out = nn.Conv2d(32, 3, 1)

        def forward(self, x):
            a = self.d1(x)
            b = self.d2(F.max_pool2d(a, 2))
            m = self.mid(F.max_pool2d(b, 2))
            u = self.u2(torch.cat([self.up2(m), b], 1))
            return self.out(self.u1(torch.cat([self.up1(u), a], 1)))

    x = torch.randn(batch, 3, 64, 64)
    return UNet(), x, (lambda out: F.mse_loss(out, x))


MODELS = ("mobilenet", "llama", "t5", "unet")
