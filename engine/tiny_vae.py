"""The tiny models' VAE: trained, not random, so that img2img keeps its input.

With random weights the VAE's decode(encode(x)) has nothing to do with ``x``, so on the
tiny models an img2img job, a variation or an upscale would not resemble its input at
all and no test could tell a working img2img from a broken one. This VAE (the same small
architecture) was trained for reconstruction on synthetic images (smooth colour fields,
hard-edged rectangles, fine noise), a few minutes on a CPU; the weights ship as
``tiny/vae.safetensors`` (fp16) and nothing is trained at run time. Its latent scaling
factor makes scaled latents about unit variance, as SD's 0.18215 does for SD's VAE, so
img2img strength means what it means on a real model.

Regenerate (about 3 minutes on 2 cores; the result differs in float rounding between
machines, which is why the file, not this recipe, is what tests render with)::

    python -m engine.tiny_vae engine/tiny/vae.safetensors
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

WEIGHTS = Path(__file__).with_name("tiny") / "vae.safetensors"
SCALING_FACTOR = 0.58  # 1 / the trained latents' standard deviation (about 1.7)
STEPS = 400


def architecture() -> Any:
    """The tiny VAE's modules, an ``AutoencoderKL`` (random weights; :func:`load` fills
    them). Typed ``Any``: diffusers' lazy modules give mypy no attributes."""
    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=64,
        scaling_factor=SCALING_FACTOR,
    )


def load() -> Any:
    """The trained tiny VAE, in fp32."""
    vae = architecture()
    weights = {name: tensor.float() for name, tensor in load_file(WEIGHTS).items()}
    vae.load_state_dict(weights)
    return vae


def synthetic_batch(generator: torch.Generator, *, count: int, size: int) -> torch.Tensor:
    """Training images in [-1, 1]: smooth colour fields of random scale, a few hard-edged
    rectangles, and some fine noise, so both flat areas and edges reconstruct."""
    images = []
    for _ in range(count):
        cells = int(torch.randint(2, 17, (1,), generator=generator))
        field = torch.randn(1, 3, cells, cells, generator=generator)
        image = F.interpolate(field, size=(size, size), mode="bicubic", align_corners=False)
        for _ in range(int(torch.randint(0, 4, (1,), generator=generator))):
            x, y = torch.randint(0, size, (2,), generator=generator).tolist()
            w, h = torch.randint(4, size // 2, (2,), generator=generator).tolist()
            image[:, :, y : y + h, x : x + w] = torch.randn(1, 3, 1, 1, generator=generator)
        grain = 0.3 * torch.rand(1, generator=generator)
        image = image + grain * torch.randn(1, 3, size, size, generator=generator)
        images.append(image)
    return torch.tanh(torch.cat(images))


def train(*, steps: int = STEPS) -> Any:
    """Train the tiny VAE from its seeded random start (reconstruction, tiny KL term)."""
    torch.manual_seed(0)
    vae = architecture()
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    for step in range(steps):
        images = synthetic_batch(generator, count=8, size=64 if step % 2 else 32)
        posterior = vae.encode(images).latent_dist
        decoded = vae.decode(posterior.sample(generator=generator)).sample
        loss = F.mse_loss(decoded, images) + 1e-7 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    return vae.eval()


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.tiny_vae OUT``: train and write the fp16 weights to OUT."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else WEIGHTS
    vae = train()
    save_file({name: t.detach().half().contiguous() for name, t in vae.state_dict().items()}, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
