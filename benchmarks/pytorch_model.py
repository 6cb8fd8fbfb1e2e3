"""The field's PyTorch model and train step, timed: the reference benchmarks/against_pytorch.py
measures icl_jax against. Needs torch and transformers, not icl_jax or jax:

    python benchmarks/pytorch_model.py --n_layer=6 --n_head=4 --n_embd=128 --mode=compile

The model is Garg et al. (2022)'s TransformerModel as published with their code: a linear
read-in of d-wide tokens (x, then y padded with zeros), Hugging Face's GPT2Model (dropout 0,
no cache, its default attention: torch's scaled_dot_product_attention), a scalar read-out
of the x tokens. The step is theirs too: a fresh batch x ~ N(0, I), w ~ N(0, I), y = x·w
sampled on the host, the squared error of every prediction, Adam. `--mode=compile` wraps the
model in torch.compile (inductor), as a researcher would.

Prints one JSON line: torch's version and threads, its 2048² float32 matmul GFLOP/s, time to
the first step, and steps/s (median, min, max over the timed steps after warm-up). With
--serve it prints that line without the steps/s after the warm-up, then for each line n it
reads runs n steps and prints their seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn
from transformers import GPT2Config, GPT2Model


class TransformerModel(nn.Module):
    def __init__(self, n_dims: int, n_points: int, n_embd: int, n_layer: int, n_head: int):
        super().__init__()
        config = GPT2Config(n_positions=2 * n_points, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False)
        self._read_in = nn.Linear(n_dims, n_embd)
        self._backbone = GPT2Model(config)
        self._read_out = nn.Linear(n_embd, 1)

    def forward(self, xs_BxKxD: torch.Tensor, ys_BxK: torch.Tensor) -> torch.Tensor:
        b, k, d = xs_BxKxD.shape
        ys_wide = torch.cat((ys_BxK.view(b, k, 1), torch.zeros(b, k, d - 1)), dim=2)
        tokens = torch.stack((xs_BxKxD, ys_wide), dim=2).view(b, 2 * k, d)
        hidden = self._backbone(inputs_embeds=self._read_in(tokens)).last_hidden_state
        return self._read_out(hidden)[:, ::2, 0]


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in [("n_layer", 6), ("n_head", 4), ("n_embd", 128), ("n_dims", 20), ("n_points", 41),
                          ("batch_size", 64), ("steps", 20), ("warmup", 3)]:
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--mode", choices=["eager", "compile"], default="compile")
    parser.add_argument("--serve", action="store_true",
                        help="after the warm-up, run n steps per line n read from stdin, and print their seconds")
    args = parser.parse_args()

    peak = matmul_gflops()
    torch.manual_seed(0)
    model = TransformerModel(args.n_dims, args.n_points, args.n_embd, args.n_layer, args.n_head)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if args.mode == "compile" else model

    def train_step() -> float:
        start = time.perf_counter()
        xs = torch.randn(args.batch_size, args.n_points, args.n_dims)
        w = torch.randn(args.batch_size, args.n_dims, 1)
        ys = (xs @ w)[:, :, 0]
        loss = ((forward(xs, ys) - ys) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    first_step = train_step()
    for _ in range(args.warmup):
        train_step()
    about = {"torch": torch.__version__, "threads": torch.get_num_threads(), "matmul_gflops": peak,
             "attention": model._backbone.config._attn_implementation, "first_step_s": first_step}
    if args.serve:  # benchmarks/against_pytorch.py interleaves these steps with icl_jax's
        print(json.dumps(about), flush=True)
        for line in sys.stdin:
            print(json.dumps([train_step() for _ in range(int(line))]), flush=True)
        return
    times = [train_step() for _ in range(args.steps)]
    print(json.dumps(about | {"steps_per_s": 1 / statistics.median(times), "min_steps_per_s": 1 / max(times),
                              "max_steps_per_s": 1 / min(times)}))


if __name__ == "__main__":
    main()
