"""Issue 20's losses (PW-Mix, the teacher-free control) against plain float64 references.

Each reference is written token by token from the formula in its docstring; autograd on it
gives the reference gradient. Batches carry a full row, a padded row (NaN logits at the
padding) and an empty row; the sign and normalisation checks would fail on a swapped KL
direction, a swapped mixing weight, or a division by the wrong count.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pwopsd import losses as L
from pwopsd.config import TrainConfig, resolve_schedule


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def make_batch(seed: int = 0, v: int = 17, t: int = 7, scale: float = 2.5):
    """[3, t, v] fp64 logits: row 0 full, row 1 padded (NaN at its padding), row 2 empty."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(3, t, v, generator=g, dtype=torch.float64) * scale
    te = torch.randn(3, t, v, generator=g, dtype=torch.float64) * scale
    mask = torch.zeros(3, t, dtype=torch.bool)
    mask[0] = True
    mask[1, : t - 3] = True
    s[1, t - 3 :] = math.nan  # padding garbage must never reach value or gradient
    te[1, t - 3 :] = math.nan
    s[2] = math.nan
    tokens = torch.randint(0, v, (3, t), generator=g)
    tokens[~mask] = -100
    return s.requires_grad_(True), te, mask, tokens


# --------------------------------------------------------------------------------------
# PW-Mix
# --------------------------------------------------------------------------------------


def pw_mix_reference(s, te, mask, temperature, tau, schedule, swap=False):
    """Token by token: m = w(u) of ``schedule``; loss_t = m clippedFKL_t + (1 - m) RKL_t with
    FKL = sum_v min(p_T (log p_T - log p_S), tau), RKL = sum_v p_S (log p_S - log p_T);
    per-sequence sum / L_b, mean over non-empty rows. ``swap`` puts m on the reverse KL."""
    w_min, c, sc = resolve_schedule(schedule)
    total, rows = 0.0, 0
    for b in range(s.shape[0]):
        length = int(mask[b].sum())
        if length == 0:
            continue
        row, i = 0.0, 0
        for j in range(s.shape[1]):
            if not mask[b, j]:
                continue
            i += 1
            m = w_min + (1 - w_min) * sigmoid(((i - 0.5) / length - c) / sc)
            ls = F.log_softmax(s[b, j] / temperature, -1)
            lt = F.log_softmax(te[b, j].detach() / temperature, -1)
            f = lt.exp() * (lt - ls)
            fkl = (f if tau is None else torch.clamp(f, max=tau)).sum()
            rkl = (ls.exp() * (ls - lt)).sum()
            row = row + ((1 - m) * fkl + m * rkl if swap else m * fkl + (1 - m) * rkl)
        total = total + row / length
        rows += 1
    return total / max(rows, 1)


@pytest.mark.parametrize("impl", ["reference", "chunked"])
@pytest.mark.parametrize(
    "schedule,temperature,tau",
    [("moderate", 1.1, 0.05), ("aggressive", 1.0, None), ((0.4, 0.6, 0.2), 0.7, 0.3)],
)
def test_pw_mix_value_and_gradient_match_the_reference(impl, schedule, temperature, tau):
    s, te, mask, _ = make_batch()
    out = L.method_loss(
        "pw_mix", s, te, mask, temperature=temperature, tau_clip=tau, schedule=schedule, impl=impl
    )
    expect = pw_mix_reference(s, te, mask, temperature, tau, schedule)
    (g,) = torch.autograd.grad(out.loss, s)
    (g_ref,) = torch.autograd.grad(expect, s)
    # position weights are computed in fp32 (as PW-OPSD's), hence rel 1e-6 rather than 1e-12
    assert out.loss.item() == pytest.approx(expect.item(), rel=1e-6)
    assert torch.allclose(g[mask], g_ref[mask], rtol=1e-5, atol=1e-9)
    assert g[~mask].eq(0).all() and g.abs().max() > 0  # padding and the empty row: exactly 0
    # a swapped mixing weight (m on the reverse KL) or a global token mean would be caught
    swapped = pw_mix_reference(s, te, mask, temperature, tau, schedule, swap=True)
    assert abs(swapped.item() - expect.item()) > 1e-3 * abs(expect.item())
    assert 0 < out.metrics["mix_weight_min"] < out.metrics["mix_weight_max"] <= 1


def test_pw_mix_endpoints_are_pw_opsd_weights_one_and_the_reverse_kl():
    """m = 1 everywhere is OPSD's per-sequence clipped FKL; m ~ 0 is the reverse KL
    KL(student || teacher), checked against torch's kl_div (direction: p_S log p_S / p_T)."""
    s, te, mask, _ = make_batch(seed=1)
    forward = L.method_loss("pw_mix", s, te, mask, schedule=(1.0, 0.5, 0.1)).loss
    cell = L.method_loss("uniform_per_sequence", s, te, mask).loss
    assert forward.item() == pytest.approx(cell.item(), rel=1e-12)
    reverse = L.method_loss("pw_mix", s, te, mask, schedule=(0.0, 1.0, 1e-4)).loss
    clean_s = torch.where(mask[..., None], s.detach(), 0.0)
    clean_t = torch.where(mask[..., None], te, 0.0)
    log_ps = F.log_softmax(clean_s / 1.1, -1)
    log_pt = F.log_softmax(clean_t / 1.1, -1)
    rkl = F.kl_div(log_pt, log_ps, log_target=True, reduction="none").sum(-1)  # [B, T]
    per_row = [rkl[b][mask[b]].mean() for b in range(2)]  # rows 0 and 1; row 2 is empty
    assert reverse.item() == pytest.approx(float(sum(per_row) / 2), rel=1e-9)
    fkl = F.kl_div(log_ps, log_pt, log_target=True, reduction="none").sum(-1)
    wrong_direction = float(sum(fkl[b][mask[b]].mean() for b in range(2)) / 2)
    assert abs(reverse.item() - wrong_direction) > 1e-2


def test_pw_mix_nan_and_infinities():
    s, te, mask, _ = make_batch(seed=2)
    bad = s.detach().clone()
    bad[0, 3, 5] = math.nan
    assert L.method_loss("pw_mix", bad, te, mask).loss.isnan()
    # the teacher rules out a token the student gives mass: the reverse KL is +inf there
    t_inf = te.clone()
    t_inf[0, 0, 2] = -math.inf
    assert L.method_loss("pw_mix", s.detach(), t_inf, mask).loss.item() == math.inf
    # the student rules out a token (p_S = 0): that entry contributes 0 to the reverse KL and
    # the gradient stays finite
    s_inf = s.detach().clone()
    s_inf[0, 0, 2] = -math.inf
    s_inf.requires_grad_(True)
    out = L.method_loss("pw_mix", s_inf, te, mask, tau_clip=0.05)
    (g,) = torch.autograd.grad(out.loss, s_inf)
    assert torch.isfinite(out.loss) and torch.isfinite(g[mask]).all()
    assert g[0, 0, 2] == 0


def test_reverse_kl_tokens_matches_kl_div():
    s, te, mask, _ = make_batch(seed=4)
    got = L.reverse_kl_tokens(s.detach(), te, mask, 1.3)
    clean_s = torch.where(mask[..., None], s.detach(), 0.0)
    clean_t = torch.where(mask[..., None], te, 0.0)
    want = F.kl_div(F.log_softmax(clean_t / 1.3, -1), F.log_softmax(clean_s / 1.3, -1),
                    log_target=True, reduction="none").sum(-1)  # fmt: skip
    assert torch.allclose(got[mask], want[mask], rtol=1e-12)
    assert got[~mask].eq(0).all()


# --------------------------------------------------------------------------------------
# the teacher-free control
# --------------------------------------------------------------------------------------


def teacher_free_reference(s, tokens, mask, temperature, tau_low, advantage):
    """Token by token: loss_t = A log p_S(y_t) 1[p_S(y_t) < tau_low]; the mean over every valid
    token (global token mean)."""
    total, n = 0.0, 0
    for b in range(s.shape[0]):
        for j in range(s.shape[1]):
            if not mask[b, j]:
                continue
            n += 1
            lp = F.log_softmax(s[b, j] / temperature, -1)[int(tokens[b, j])]
            if math.exp(lp.item()) < tau_low:
                total = total + advantage * lp
    return total / max(n, 1)


@pytest.mark.parametrize("tau_low,advantage,temperature", [(0.1, 1.0, 1.1), (0.3, 2.5, 0.8)])
def test_teacher_free_value_and_gradient_match_the_reference(tau_low, advantage, temperature):
    s, _, mask, tokens = make_batch(seed=5, v=11)
    out = L.method_loss("teacher_free", s, None, mask, tokens=tokens, temperature=temperature,
                        tau_low=tau_low, advantage=advantage)  # fmt: skip
    expect = teacher_free_reference(s, tokens, mask, temperature, tau_low, advantage)
    frac = out.metrics["low_prob_fraction"]
    assert 0 < frac < 1, "both sides of the gate must be exercised"
    (g,) = torch.autograd.grad(out.loss, s)
    (g_ref,) = torch.autograd.grad(expect, s)
    assert out.loss.item() == pytest.approx(expect.item(), rel=1e-12)
    assert torch.allclose(g[mask], g_ref[mask], rtol=1e-10, atol=1e-14)
    assert g[~mask].eq(0).all()
    # normalisation: the mean is over every valid token, not over the gated ones only
    gated_mean = expect.item() / frac
    assert abs(out.loss.item() - gated_mean) > 1e-6


def test_teacher_free_sign_pushes_low_probability_tokens_down():
    """A descent step lowers the probability of every gated sampled token and leaves the
    ungated ones' logits untouched; the loss is <= 0 (A > 0, log p < 0)."""
    s, _, mask, tokens = make_batch(seed=6, v=11)
    out = L.teacher_free_loss(s, tokens, mask, temperature=1.0, tau_low=0.2)
    assert out.loss.item() < 0
    (g,) = torch.autograd.grad(out.loss, s)
    with torch.no_grad():
        logp = F.log_softmax(torch.where(mask[..., None], s, 0.0), -1)
        p_o = logp.gather(-1, tokens.clamp(min=0)[..., None])[..., 0].exp()  # [B, T]
        stepped = s - 0.5 * g
        p_after = F.softmax(torch.where(mask[..., None], stepped, 0.0), -1)
        p_after_o = p_after.gather(-1, tokens.clamp(min=0)[..., None])[..., 0]
    gated = mask & (p_o < 0.2)
    assert gated.any() and (mask & ~gated).any()
    assert (p_after_o[gated] < p_o[gated]).all()
    assert g[mask & ~gated].eq(0).all()
    sampled = g.gather(-1, tokens.clamp(min=0)[..., None])[..., 0]
    assert (sampled[gated] > 0).all()  # d loss / d logit of the sampled token = A (1 - p) / (T N)


def test_teacher_free_edges_and_validation():
    s, _, mask, tokens = make_batch(seed=7)
    bad = s.detach().clone()
    bad[0, 1, 0] = math.nan
    assert L.teacher_free_loss(bad, tokens, mask).loss.isnan()
    none = torch.zeros_like(mask)
    out = L.method_loss("teacher_free", s, None, none, tokens=tokens)
    (g,) = torch.autograd.grad(out.loss, s)
    assert out.loss.item() == 0.0 and g.eq(0).all()
    with pytest.raises(ValueError, match="needs tokens"):
        L.method_loss("teacher_free", s, None, mask)
    with pytest.raises(ValueError, match="tau_low"):
        L.teacher_free_loss(s, tokens, mask, tau_low=0.0)
    with pytest.raises(ValueError, match="advantage"):
        L.teacher_free_loss(s, tokens, mask, advantage=-1.0)
    with pytest.raises(ValueError, match="needs teacher_logits"):
        L.method_loss("pw_mix", s, None, mask)


def test_defaults_have_one_home():
    cfg = TrainConfig()
    assert L.TEACHER_FREE_TAU_LOW == cfg.teacher_free_tau_low == 0.1
    assert L.TEACHER_FREE_ADVANTAGE == cfg.teacher_free_advantage == 1.0
