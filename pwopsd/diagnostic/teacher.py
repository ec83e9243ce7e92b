"""The teacher's side of the diagnostic (phases B, C, D), as functions of tensors and ids.

* which tokens may be candidates or forced children (junk / EOS / special filters);
* per-position statistics of one teacher forward pass (full and top-k truncated entropy);
* candidate selection (plausibility floor, spacing, nothing from the final ``\\boxed`` on);
* MC dropout through forward hooks on the last decoder layers, and its three scores.

No files and no engines here: :mod:`pwopsd.diagnostic.teacher_phases` feeds these.
"""

from __future__ import annotations

from typing import Any

import torch

from pwopsd.config import DiagnosticConfig


def valid_token_mask(tokenizer: Any, vocab_size: int, eos: set[int]) -> list[bool]:
    """Per vocabulary id: may it be a candidate's spine token or a forced child?

    Invalid ("junk"): EOS, special and added tokens (chat markers, think tags, the toy
    world's prompt phrases), ids past the tokenizer's vocabulary, tokens that decode to
    whitespace only or to nothing, and partial UTF-8 bytes (decode to U+FFFD). Our choice.
    """
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values()) | eos
    n_tok = len(tokenizer)
    mask = []
    for i in range(vocab_size):
        if i >= n_tok or i in special:
            mask.append(False)
            continue
        text = tokenizer.decode([i])
        mask.append(bool(text.strip()) and "\ufffd" not in text)
    return mask


def boxed_start(tokenizer: Any, ids: list[int]) -> int | None:
    """Index of the spine token holding the first character of the final ``\\boxed``.

    None without a box. Binary search over decoded prefix lengths (O(log T) decodes).
    """
    text = tokenizer.decode(ids, skip_special_tokens=True)
    at = text.rfind("\\boxed")
    if at < 0:
        return None
    lo, hi = 0, len(ids)  # smallest i with len(decode(ids[:i])) > at
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) > at:
            hi = mid
        else:
            lo = mid + 1
    return max(lo - 1, 0)


def hidden_states(net: Any, ids: list[int]) -> Any:
    """Last hidden states [T, H] (after the final norm) of one sequence."""
    base = getattr(net, net.base_model_prefix)
    x = torch.tensor([ids], device=net.device)
    return base(input_ids=x).last_hidden_state[0]


def teacher_position_stats(
    logits: Any, spine_tokens: Any, valid: Any, top_k: int, n_children: int
) -> dict[str, list]:
    """Per position, from teacher logits [T, V] that predict ``spine_tokens`` [T].

    Returns lists of: full entropy, top-k valid-token truncated entropy (the teacher's
    probabilities of its k most likely valid tokens, renormalised), top-1 probability,
    probability of the spine token, and the top ``n_children`` valid ids with their
    probabilities.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # [T, V]
    p = logp.exp()
    full_h = -(p * logp).sum(-1)  # [T]
    masked = logp.masked_fill(~valid, float("-inf"))
    top_lp, top_ids = masked.topk(top_k, dim=-1)  # [T, k]
    top_p = top_lp.exp()
    q = top_p / top_p.sum(-1, keepdim=True).clamp_min(1e-30)
    trunc_h = -(q * q.clamp_min(1e-30).log()).sum(-1)
    spine_p = p.gather(1, spine_tokens[:, None])[:, 0]
    r = lambda t: [round(float(x), 6) for x in t]  # noqa: E731
    return {
        "entropy": r(full_h),
        "trunc_entropy": r(trunc_h),
        "top1": r(p.max(-1).values),
        "spine_prob": r(spine_p),
        "child_ids": top_ids[:, :n_children].tolist(),
        "child_probs": [r(row) for row in top_p[:, :n_children]],
    }


def select_candidates(
    spine: list[int],
    stats: dict[str, Any],
    valid: list[bool],
    cfg: DiagnosticConfig,
    eos: set[int],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Candidate positions of one spine and why the others were dropped (counts).

    A position is eligible when the spine token there is valid (not junk, EOS or special),
    it lies before the final ``\\boxed`` (the whole spine when there is none), and at least
    ``min_children`` of the teacher's top valid children reach ``plausibility_floor``. The
    eligible positions are taken by falling truncated entropy, skipping any closer than
    ``min_spacing`` to one already taken, up to ``candidates_per_problem``.
    """
    drops = {
        "junk_or_special_token": 0,
        "after_boxed": 0,
        "implausible_children": 0,
        "spacing": 0,
        "eos_or_junk_children": 0,
    }
    n_body = len(spine) - (1 if spine and spine[-1] in eos else 0)
    limit = stats.get("boxed_start")
    limit = n_body if limit is None else min(limit, n_body)
    eligible = []
    for i in range(len(spine)):
        if i >= limit:
            drops["after_boxed"] += 1
            continue
        if not valid[spine[i]]:
            drops["junk_or_special_token"] += 1
            continue
        pairs = list(zip(stats["child_ids"][i], stats["child_probs"][i], strict=True))
        kids = [(c, p) for c, p in pairs if valid[c] and c not in eos]
        # B keeps only valid children; a child that would end the sequence is dropped here too
        drops["eos_or_junk_children"] += len(pairs) - len(kids)
        kids = [(c, p) for c, p in kids if p >= cfg.plausibility_floor]
        if len(kids) < cfg.min_children:
            drops["implausible_children"] += 1
            continue
        eligible.append((stats["trunc_entropy"][i], i, kids))
    eligible.sort(key=lambda e: (-e[0], e[1]))
    chosen: list[dict[str, Any]] = []
    for h, i, kids in eligible:
        if len(chosen) >= cfg.candidates_per_problem:
            break
        if any(abs(i - c["pos"]) < cfg.min_spacing for c in chosen):
            drops["spacing"] += 1
            continue
        chosen.append(
            {
                "pos": i,
                "u": (i + 0.5) / n_body,
                "spine_token": spine[i],
                "children": [c for c, _ in kids],
                "child_probs": [p for _, p in kids],
                "trunc_entropy": h,
                "entropy": stats["entropy"][i],
                "top1": stats["top1"][i],
                "spine_prob": stats["spine_prob"][i],
            }
        )
    chosen.sort(key=lambda c: c["pos"])
    return chosen, drops


class DropoutHooks:
    """Context manager: dropout on the outputs of the last ``n_layers`` decoder layers.

    Forward hooks, so the weights are untouched; every hook is removed in a ``finally``,
    even when a pass raises. ``generator`` makes the masks reproducible.
    """

    def __init__(self, net: Any, n_layers: int, p: float, seed: int) -> None:
        self.layers = list(decoder_layers(net))[-n_layers:]
        self.p = p
        self.gen = torch.Generator(device=net.device).manual_seed(seed)
        self.handles: list[Any] = []

    def _hook(self, module: Any, args: Any, output: Any) -> Any:
        h = output[0] if isinstance(output, tuple) else output
        if self.p > 0:
            keep = torch.rand(h.shape, generator=self.gen, device=h.device) >= self.p
            h = h * keep.to(h.dtype) / (1 - self.p)
        return (h, *output[1:]) if isinstance(output, tuple) else h

    def __enter__(self) -> DropoutHooks:
        try:
            for layer in self.layers:
                self.handles.append(layer.register_forward_hook(self._hook))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __exit__(self, *exc: object) -> None:
        self.remove()


def decoder_layers(net: Any) -> Any:
    """The decoder layer list of a causal LM (``model.layers`` for Qwen3 / Llama / Olmo)."""
    base = getattr(net, net.base_model_prefix)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise ValueError(
            f"{type(net).__name__}: no decoder layer list at .{net.base_model_prefix}.layers"
        )
    return layers


def mc_scores(probs: Any, top_k: int, valid: Any) -> dict[str, list[float]]:
    """MC-dropout scores from ``probs`` [S passes, N positions, V].

    * predictive entropy H[mean_s p_s];
    * mutual information H[mean p] - mean_s H[p_s] (the epistemic part);
    * Dirichlet precision alpha_0 by the method of moments, per component j of the top-k
      valid tokens of the mean: m_j (1 - m_j) / v_j - 1, combined by a geometric mean over
      the components with v_j > 0 (our choice of estimator). Large = confident.
    """
    eps = 1e-12
    mean = probs.mean(0)  # [N, V]
    pred_h = -(mean * (mean + eps).log()).sum(-1)
    exp_h = -(probs * (probs + eps).log()).sum(-1).mean(0)
    mi = (pred_h - exp_h).clamp_min(0)
    top_ids = mean.masked_fill(~valid, -1).topk(top_k, dim=-1).indices  # [N, k]
    comp = probs.gather(2, top_ids.unsqueeze(0).expand(probs.shape[0], -1, -1))  # [S, N, k]
    m = comp.mean(0)
    v = comp.var(0, unbiased=True) if probs.shape[0] > 1 else torch.zeros_like(m)
    ok = v > 1e-12
    a0 = torch.where(ok, m * (1 - m) / v.clamp_min(1e-12) - 1, torch.ones_like(m)).clamp_min(1e-6)
    log_a0 = torch.where(ok, a0.log(), torch.zeros_like(a0)).sum(-1) / ok.sum(-1).clamp_min(1)
    prec = torch.where(ok.any(-1), log_a0.exp(), torch.full_like(log_a0, 1e6))
    r = lambda t: [round(float(x), 6) for x in t]  # noqa: E731
    return {
        "mc_pred_entropy": r(pred_h),
        "mc_mutual_info": r(mi),
        "mc_dirichlet_precision": r(prec),
    }
