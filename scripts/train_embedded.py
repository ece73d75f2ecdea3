"""Train the embedded default model from scikit-learn's bundled digits (no downloads).

Trains (1) the digit classifier used as FID-proxy feature extractor and adherence judge and (2) the
text-conditioned pixel-space U-Net + its embedding-table text encoder, then writes safetensors + JSON configs
to src/datosearch/models/weights/ together with `embedded_training.json` (split, settings, timings).

    PYTHONPATH=src python scripts/train_embedded.py            # the shipped settings
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from datosearch.models import digits as dg
from datosearch.models import embedded as em

SPLIT_SEED = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def split_indices(labels: torch.Tensor, heldout_fraction: float) -> tuple[list[int], list[int]]:
    """Stratified train / held-out split of the 1797 digits (fixed seed)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train, held = train_test_split(idx, test_size=heldout_fraction, random_state=SPLIT_SEED,
                                   stratify=labels.numpy())
    return sorted(train.tolist()), sorted(held.tolist())


def shift_augment(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random integer translations (zero fill) plus mild noise, for the classifier only."""
    pad = F.pad(x, (max_shift,) * 4)
    out = torch.empty_like(x)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, len(x)), generator=gen)
    size = x.shape[-1]
    for i in range(len(x)):
        out[i] = pad[i, :, dy[i]:dy[i] + size, dx[i]:dx[i] + size]
    return (out + 0.05 * torch.randn(out.shape, generator=gen)).clamp(0, 1)


def train_classifier(x: torch.Tensor, y: torch.Tensor, args) -> dg.DigitClassifier:
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    model = dg.DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(args.classifier_epochs):
        perm = torch.randperm(len(x), generator=gen)
        for b in perm.split(64):
            loss = F.cross_entropy(model(shift_augment(x[b], 2, gen)), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: dg.DigitClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def lr_at(step: int, args) -> float:
    """Linear warm-up then constant: the checkpoint after k steps equals a run with `--steps k`."""
    return args.lr * min(1.0, (step + 1) / args.warmup)


def save_diffusion(unet, text_encoder, out: Path, guidance: float) -> None:
    unet.save_pretrained(out / "unet", safe_serialization=True)
    text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
    em.embedded_scheduler().save_pretrained(out / "scheduler")
    (out / "pipeline.json").write_text(json.dumps({"guidance_scale": guidance, "prompt_length": em.PROMPT_LENGTH,
                                                   "num_inference_steps": 50}, indent=2) + "\n")


def train_diffusion(x: torch.Tensor, y: torch.Tensor, args, out: Path, record: dict):
    """v-prediction DDPM training with 10% empty-prompt dropout (for CFG) and an EMA copy.

    v = sqrt(a) * noise - sqrt(1 - a) * x0: unlike epsilon, its x0 estimate does not amplify errors at high
    noise, and there the loss rewards predicting the prompted digit, so the conditioning is learned early.
    """
    seed_everything(args.seed)
    unet, text_encoder = em.embedded_unet(args.seed), em.embedded_text_encoder(args.seed)
    tokenizer, sched = em.embedded_tokenizer(), em.embedded_scheduler()
    unet.train(), text_encoder.train()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = list(ema_unet.parameters()) + list(ema_text.parameters())
    prompts = [dg.digit_prompt(d) for d in range(10)] + [""]
    ids = tokenizer(prompts, padding="max_length", max_length=em.PROMPT_LENGTH, truncation=True,
                    return_tensors="pt").input_ids  # row 10 = empty prompt
    pixels = x * 2 - 1
    gen = torch.Generator().manual_seed(args.seed)
    alphas = sched.alphas_cumprod
    start, losses = time.time(), []
    for step in range(args.steps):
        b = torch.randint(0, len(x), (args.batch_size,), generator=gen)
        x0, labels = pixels[b], y[b].clone()
        labels[torch.rand(len(b), generator=gen) < args.cond_dropout] = 10
        t = torch.randint(0, sched.config.num_train_timesteps, (len(b),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            cond = text_encoder(ids[labels])[0]
            pred = unet(noisy, t, encoder_hidden_states=cond).sample
        target = a.sqrt() * noise - (1 - a).sqrt() * x0  # v
        loss = F.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema_params, params):
                e.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            el = time.time() - start
            print(f"step {step + 1}/{args.steps} loss {np.mean(losses[-50:]):.4f} "
                  f"{el:.0f}s ({el / (step + 1):.2f}s/step)", flush=True)
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            save_diffusion(ema_unet, ema_text, out, args.guidance)
            record["diffusion"].update(steps_done=step + 1, train_seconds=round(time.time() - start, 1),
                                       final_loss_50=float(np.mean(losses[-50:])))
            (out.parent / "embedded_training.json").write_text(json.dumps(record, indent=1) + "\n")
    return ema_unet, ema_text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(dg.WEIGHTS_DIR))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--heldout-fraction", type=float, default=0.2)
    p.add_argument("--classifier-epochs", type=int, default=20)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--cond-dropout", type=float, default=0.1)
    p.add_argument("--guidance", type=float, default=em.DEFAULT_GUIDANCE)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (slower than fp32 for this model on CPU)")
    p.add_argument("--skip-classifier", action="store_true", help="keep the existing classifier")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    out = args.out
    (out / "embedded").mkdir(parents=True, exist_ok=True)

    images, labels = dg.load_digit_images()
    train_idx, held_idx = split_indices(labels, args.heldout_fraction)
    record = {
        "data": "sklearn.datasets.load_digits (1797 8x8 images, 0..16), /16, bilinear 8x8->32x32",
        "split": {"seed": SPLIT_SEED, "heldout_fraction": args.heldout_fraction, "method": "stratified",
                  "train_indices": train_idx, "heldout_indices": held_idx},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": args.threads, "machine": platform.machine()},
        "classifier": {}, "diffusion": {},
    }
    xtr, ytr = images[train_idx], labels[train_idx]
    xho, yho = images[held_idx], labels[held_idx]

    if not args.skip_classifier:
        t0 = time.time()
        clf = train_classifier(xtr, ytr, args)
        record["classifier"] = {"train_seconds": round(time.time() - t0, 1), "train_accuracy": accuracy(clf, xtr, ytr),
                                "heldout_accuracy": accuracy(clf, xho, yho)}
        print("classifier", record["classifier"], flush=True)
        save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(out / "digit_classifier.safetensors"))
        (out / "embedded_training.json").write_text(json.dumps(record, indent=1) + "\n")
    elif (out / "embedded_training.json").exists():
        record["classifier"] = json.loads((out / "embedded_training.json").read_text()).get("classifier", {})

    train_diffusion(xtr, ytr, args, out / "embedded", record)
    print("done", record["diffusion"], flush=True)


if __name__ == "__main__":
    main()
