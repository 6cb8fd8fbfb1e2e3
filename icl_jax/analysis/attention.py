"""Where the transformer's heads look: attention maps of chosen prompts, and two scores per head.

* induction score (Olsson et al. 2022): on prompts made of a block of m examples repeated
  twice, the attention from each token of the repeat to the token after its previous
  occurrence (2m tokens back, plus one) — what copying the label of a seen input needs;
  1 for a perfect copying head.
* nearest-neighbour score: at the query of k ≥ 2 examples, the attention mass on the x and y
  tokens of the earlier example nearest (Euclidean) to the query; `chance` is what uniform
  attention over the 2k + 1 visible tokens puts there.
Legend: B prompts, K points, D input width, H heads, T = 2K tokens, L layers.
"""

from __future__ import annotations

import numpy as np

from icl_jax.analysis import common
from icl_jax.errors import UserError
from icl_jax.evaluation import prompts

MAP_PROMPTS = 2  # prompts drawn as attention maps


def induction_score(attention_BxHxTxT: np.ndarray, period_tokens: int) -> np.ndarray:
    """score_H: mean attention from token t to token t − period + 1, over the tokens t of the
    repeat (t ≥ period) and the prompts."""
    t = attention_BxHxTxT.shape[-1]
    rows = np.arange(period_tokens, t)
    return attention_BxHxTxT[:, :, rows, rows - period_tokens + 1].mean(axis=(0, 2))


def nearest_neighbour_score(attention_BxHxTxT: np.ndarray, x_BxKxD: np.ndarray) -> tuple[np.ndarray, float]:
    """(score_H, chance): attention mass from the query token of k to the two tokens of the
    nearest earlier example, mean over prompts and k ≥ 2."""
    b, k_points, _ = x_BxKxD.shape
    x = np.asarray(x_BxKxD, np.float64)
    distance_BxKxK = ((x[:, :, None] - x[:, None]) ** 2).sum(-1)
    earlier_KxK = np.arange(k_points)[None, :] < np.arange(k_points)[:, None]
    nearest_BxK = np.argmin(np.where(earlier_KxK, distance_BxKxK, np.inf), axis=-1)
    ks = np.arange(2, k_points)
    rows = 2 * ks  # the query token of k (x tokens at even positions)
    near = nearest_BxK[:, ks]
    a = attention_BxHxTxT[:, :, rows]  # B×H×len(ks)×T
    mass = (np.take_along_axis(a, (2 * near)[:, None, :, None], axis=-1)[..., 0]
            + np.take_along_axis(a, (2 * near + 1)[:, None, :, None], axis=-1)[..., 0])
    return mass.mean(axis=(0, 2)), float(np.mean(2.0 / (2 * ks + 1)))


def repeated_block(x_NxKxD: np.ndarray, y_NxK: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The first m = K // 2 examples twice (2m points): (x, y, period in tokens = 2m)."""
    m = x_NxKxD.shape[1] // 2
    return (np.concatenate([x_NxKxD[:, :m]] * 2, axis=1), np.concatenate([y_NxK[:, :m]] * 2, axis=1), 2 * m)


def analyze(run: common.Run, num_prompts: int, ks: list[int] | None = None):
    config, task = run.config, run.task
    x, y, _ = prompts.eval_prompts(config, num_prompts)
    attention = run.trace(x, y).attention_BxHxTxT  # the softmax attention layers' (hybrid: every other layer's)
    if attention is None:
        raise UserError(f"--what=attention needs softmax attention; this run's model.kind is {run.kind!r}")
    xr, yr, period = repeated_block(x, y)
    repeated = run.trace(xr, yr).attention_BxHxTxT
    nn_scores = [nearest_neighbour_score(a, x) for a in attention]
    result = {"step": run.step, "num_prompts": num_prompts, "layers": len(attention), "heads": attention[0].shape[1],
              "induction_score": [induction_score(a, period).tolist() for a in repeated],
              "induction_chance": float(np.mean(1.0 / (np.arange(period, 2 * period) + 1))),
              "nearest_neighbour_score": [s.tolist() for s, _ in nn_scores],
              "nearest_neighbour_chance": nn_scores[0][1] if nn_scores else 0.0}
    result["summary"] = {"induction_score[layer][head]": [[round(v, 3) for v in s] for s in result["induction_score"]],
                         "induction_chance": round(result["induction_chance"], 3),
                         "nearest_neighbour_score[layer][head]": [[round(v, 3) for v in s]
                                                                  for s in result["nearest_neighbour_score"]],
                         "nearest_neighbour_chance": round(result["nearest_neighbour_chance"], 3)}
    maps = [np.stack([a[p] for a in attention]) for p in range(min(MAP_PROMPTS, num_prompts))]  # L×H×T×T each
    return result, _plot(maps, task, run.step)


def _plot(maps: list[np.ndarray], task, step: int):
    n_layer, n_head = maps[0].shape[:2]
    fig = common.blank_figure(2.6 * n_head * len(maps), 2.6 * n_layer)
    for p, m in enumerate(maps):
        for layer in range(n_layer):
            for head in range(n_head):
                ax = fig.add_subplot(n_layer, n_head * len(maps), layer * n_head * len(maps) + p * n_head + head + 1)
                ax.imshow(m[layer, head], cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"prompt {p} L{layer} H{head}", fontsize=8)
                ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{task.name} d={task.n_dims}, step {step}: attention (row: query token, column: key; x,y alternate)",
                 fontsize=9)
    return fig
