"""pwopsd.losses: the pure functions and method losses against hand computations (PROTOCOL sec. 2)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pwopsd import config, vocab
from pwopsd import losses as L
from pwopsd.config import ConfigError


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def rand_logits(b=2, t=5, v=11, seed=0, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    te = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    return s, te


# --------------------------------------------------------------------------------------
# per-token clipped FKL
# --------------------------------------------------------------------------------------


def by_hand_fkl(s_row, t_row, temperature, tau):
    """Entry-by-entry python-float version of PROTOCOL sec. 2 for one token."""
    s = [x / temperature for x in s_row]
    t = [x / temperature for x in t_row]
    ls = math.log(sum(math.exp(x) for x in s))
    lt = math.log(sum(math.exp(x) for x in t))
    total = 0.0
    for sv, tv in zip(s, t):
        p_t = math.exp(tv - lt)
        f = p_t * ((tv - lt) - (sv - ls))
        total += f if tau is None else min(f, tau)
    return total


@pytest.mark.parametrize("temperature,tau", [(1.1, 0.05), (1.0, None), (0.7, 0.2), (2.0, -0.01)])
def test_reference_fkl_matches_entrywise_formula(temperature, tau):
    s, t = rand_logits(b=1, t=3, v=7)
    out = L.per_token_clipped_fkl(s, t, temperature, tau, impl="reference")
    for j in range(3):
        expect = by_hand_fkl(s[0, j].tolist(), t[0, j].tolist(), temperature, tau)
        assert out[0, j].item() == pytest.approx(expect, rel=1e-10, abs=1e-12)


def test_unclipped_equals_forward_kl_and_temperature_scales_logits():
    s, t = rand_logits()
    ref = F.kl_div(
        F.log_softmax(s / 1.3, -1), F.log_softmax(t / 1.3, -1), log_target=True, reduction="none"
    ).sum(-1)
    assert torch.allclose(L.per_token_clipped_fkl(s, t, 1.3, None, impl="reference"), ref)
    assert torch.allclose(
        L.per_token_clipped_fkl(s, t, 1.3, 0.05),
        L.per_token_clipped_fkl(s / 1.3, t / 1.3, 1.0, 0.05),
    )


def test_clip_bounds_each_entry_and_can_make_token_negative():
    # teacher mass spread over entries where the student is more confident -> negative f_v;
    # one entry with a large positive f_v gets clipped to tau, so the token total turns negative.
    t = torch.tensor([[[5.0, 0.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    s = torch.tensor([[[0.0, 1.5, 1.5, 1.5, 1.5]]], dtype=torch.float64)
    unclipped = L.per_token_clipped_fkl(s, t, 1.0, None).item()
    clipped = L.per_token_clipped_fkl(s, t, 1.0, 0.05).item()
    assert unclipped > 0 > clipped
    assert clipped <= 0.05 * 5


def test_default_impl_matches_reference_and_handles_masked_vocab():
    s, t = rand_logits(dtype=torch.float32)
    t[0, 0, :4] = -math.inf  # teacher masks part of the vocabulary
    s[1, 2, 2:5] = -math.inf  # student puts no mass where the teacher does: f = inf -> tau
    ref = L.per_token_clipped_fkl(s, t, impl="reference")
    out = L.per_token_clipped_fkl(s, t)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, ref, atol=1e-6)


def test_fkl_input_errors_name_the_culprit():
    s = torch.zeros(1, 2, 8)
    with pytest.raises(ValueError, match=r"vocab sizes \(151936 vs 152064\)"):
        L.per_token_clipped_fkl(torch.zeros(1, 1, 151_936), torch.zeros(1, 1, 152_064))
    with pytest.raises(TypeError, match="teacher_logits"):
        L.per_token_clipped_fkl(s, torch.zeros(1, 2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="student_logits must be 3-D"):
        L.per_token_clipped_fkl(torch.zeros(2, 8), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="same shape"):
        L.per_token_clipped_fkl(s, torch.zeros(1, 3, 8))
    with pytest.raises(ValueError, match="temperature"):
        L.per_token_clipped_fkl(s, s, temperature=0.0)
    with pytest.raises(ValueError, match="tau_clip"):
        L.per_token_clipped_fkl(s, s, tau_clip=float("nan"))
    with pytest.raises(ValueError, match="impl"):
        L.per_token_clipped_fkl(s, s, impl="fast")


# --------------------------------------------------------------------------------------
# position weights, schedules
# --------------------------------------------------------------------------------------


def test_position_weights_by_hand_and_padding_invariant():
    mask = torch.tensor(
        [[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], dtype=torch.bool
    )
    w = L.position_weights(mask, 0.25, 0.30, 0.10)
    expect = [0.25 + 0.75 * sigmoid(((i - 0.5) / 4 - 0.30) / 0.10) for i in (1, 2, 3, 4)]
    assert w[0, :4].tolist() == pytest.approx(expect, rel=1e-6)
    assert w[1, 2:].tolist() == pytest.approx(expect, rel=1e-6)  # left padding: same u
    assert w[2, 0].item() == pytest.approx(0.25 + 0.75 * sigmoid((0.5 - 0.30) / 0.10), rel=1e-6)
    assert (w[~mask] == 0).all()


def test_position_weights_shape_of_curve():
    mask = torch.ones(1, 200, dtype=torch.bool)
    for w_min, c, s in vocab.SCHEDULES.values():
        w = L.position_weights(mask, w_min, c, s)[0]
        assert (w[1:] >= w[:-1]).all()  # non-decreasing in u
        assert w.min() >= w_min - 1e-6 and w.max() <= 1.0 + 1e-6
        assert w[-1] > 0.9  # late tokens keep (nearly) full weight


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"w_min": -0.1}, "w_min"),
        ({"w_min": 1.5}, "w_min"),
        ({"s": 0.0}, "transition width"),
        ({"s": -1.0}, "transition width"),
        ({"c": -0.2}, "transition centre"),
        ({"c": 1.3}, "transition centre"),
        ({"c": math.nan}, "c=nan"),
    ],
)
def test_position_weight_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        L.position_weights(torch.ones(1, 3, dtype=torch.bool), **kwargs)
    # the explicit-tuple schedule and the notebooks' configs share the same check
    sched = dict(zip(("w_min", "c", "s"), vocab.SCHEDULES["moderate"], strict=True)) | kwargs
    with pytest.raises(ConfigError, match=match):
        L.resolve_schedule((sched["w_min"], sched["c"], sched["s"]))
    with pytest.raises(ConfigError, match=match):
        config.check_schedule(**sched)
    assert L.check_schedule is config.check_schedule


def test_position_weight_bad_mask():
    with pytest.raises(ValueError, match="mask must be 2-D"):
        L.position_weights(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="0/1"):
        L.position_weights(torch.tensor([[0.0, 2.0]]))


def test_schedules_fit_the_papers_words():
    sch = vocab.SCHEDULES
    assert set(sch) == {"mild", "moderate", "sharp", "aggressive"}
    assert sch["moderate"] == (0.25, 0.30, 0.10)  # the published default
    floors = {k: v[0] for k, v in sch.items()}
    assert floors["mild"] == max(floors.values()) and floors["aggressive"] == min(floors.values())
    assert sch["mild"][2] == max(v[2] for v in sch.values())  # softest transition
    assert (
        floors["sharp"] < floors["moderate"] and sch["sharp"][2] < sch["moderate"][2]
    )  # lower, steeper
    assert sch["aggressive"][1] == max(v[1] for v in sch.values())  # latest transition
    for name in ("mild", "sharp", "aggressive"):
        assert "our choice" in vocab.SCHEDULE_NOTES[name]
    assert "published" in vocab.SCHEDULE_NOTES["moderate"]
    assert L.resolve_schedule("sharp") == sch["sharp"]
    with pytest.raises(ValueError, match="schedule"):
        L.resolve_schedule("steep")


# --------------------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------------------


def test_reduce_tokens_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, 5.0, 7.0, 7.0], [8.0, 8.0, 8.0, 8.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    w = torch.tensor([[0.5, 1.0, 2.0, 3.0], [1.0, 0.5, 9.0, 9.0], [1.0, 1.0, 1.0, 1.0]])
    assert L.reduce_tokens(x, mask).item() == pytest.approx((1 + 2 + 3 + 4 + 5) / 5)
    assert L.reduce_tokens(x, mask, w).item() == pytest.approx((0.5 + 2 + 6 + 4 + 2.5) / 5)
    # per sequence: row sums / L, mean over the two rows that have tokens (row 2 excluded)
    assert L.reduce_tokens(x, mask, w, per_sequence=True).item() == pytest.approx(
        ((0.5 + 2 + 6) / 3 + (4 + 2.5) / 2) / 2
    )
    coeff = L.token_coefficients(mask, w, per_sequence=True)
    assert (coeff * x).sum().item() == pytest.approx(
        L.reduce_tokens(x, mask, w, per_sequence=True).item()
    )


def test_reduce_tokens_all_masked_and_garbage_padding():
    x = torch.tensor([[1.0, float("nan")], [float("inf"), 2.0]], requires_grad=True)
    mask = torch.tensor([[True, False], [False, True]])
    for per_seq in (False, True):
        out = L.reduce_tokens(x, mask, per_sequence=per_seq)
        (g,) = torch.autograd.grad(out, x)
        assert out.item() == pytest.approx(1.5)
        assert torch.isfinite(g).all() and g[~mask].eq(0).all()
    none = torch.zeros(2, 2, dtype=torch.bool)
    out = L.reduce_tokens(x, none, per_sequence=True)
    (g,) = torch.autograd.grad(out, x)
    assert out.item() == 0.0 and g.eq(0).all()


def test_reduce_tokens_errors():
    with pytest.raises(ValueError, match="per_token must be a 2-D"):
        L.reduce_tokens(torch.zeros(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask has shape"):
        L.reduce_tokens(torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="weights must be"):
        L.reduce_tokens(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), torch.ones(3))


# --------------------------------------------------------------------------------------
# method losses
# --------------------------------------------------------------------------------------


def batch(seed=0, b=3, t=6, v=13, dtype=torch.float64):
    s, te = rand_logits(b, t, v, seed, dtype)
    mask = torch.tensor([[1] * t, [1] * (t - 2) + [0, 0], [0] * t], dtype=torch.bool)[:b]
    tokens = torch.randint(0, v, (b, t), generator=torch.Generator().manual_seed(seed))
    tokens[~mask] = -100
    return s.requires_grad_(True), te, mask, tokens


def test_factorial_cells_and_named_methods():
    s, t, mask, _ = batch()
    per_token = L.reference_per_token_clipped_fkl(s, t)
    w = L.position_weights(mask)
    expect = {
        "uniform_global": L.reduce_tokens(per_token, mask),
        "uniform_per_sequence": L.reduce_tokens(per_token, mask, per_sequence=True),
        "position_global": L.reduce_tokens(per_token, mask, w),
        "position_per_sequence": L.reduce_tokens(per_token, mask, w, per_sequence=True),
    }
    for cell, value in expect.items():
        for impl in ("reference", "chunked"):
            out = L.method_loss(cell, s, t, mask, impl=impl).loss
            assert out.item() == pytest.approx(value.item(), rel=1e-10)
    assert L.method_loss("opsd", s, t, mask).loss.item() == pytest.approx(
        expect["uniform_global"].item()
    )
    assert L.method_loss("pw_opsd", s, t, mask).loss.item() == pytest.approx(
        expect["position_per_sequence"].item()
    )
    # cells differ from each other on this batch (the factorial is not degenerate)
    assert len({round(v.item(), 8) for v in expect.values()}) == 4


def test_pwopsd_schedule_changes_loss_and_gradients_agree():
    s, t, mask, _ = batch()
    a = L.pw_opsd_loss(s, t, mask, schedule="moderate", impl="chunked")
    b = L.pw_opsd_loss(s, t, mask, schedule="aggressive", impl="chunked")
    assert a.loss.item() != pytest.approx(b.loss.item())
    (g_fast,) = torch.autograd.grad(a.loss, s)
    (g_ref,) = torch.autograd.grad(L.pw_opsd_loss(s, t, mask, impl="reference").loss, s)
    assert torch.allclose(g_fast, g_ref, atol=1e-12)
    assert g_fast[2].eq(0).all()  # the all-masked row gets exactly zero gradient


def test_all_masked_batch_gives_zero_loss_and_zero_gradients():
    s, t, _, tokens = batch()
    none = torch.zeros(s.shape[:2], dtype=torch.bool)
    for method in vocab.TRAINABLE_METHODS:
        out = L.method_loss(
            method, s, t, none, tokens=tokens, step=0 if method != "reopold" else 60
        )
        (g,) = torch.autograd.grad(out.loss, s, allow_unused=False)
        assert out.loss.item() == 0.0, method
        assert torch.isfinite(g).all() and g.eq(0).all(), method


def test_eopd_by_hand():
    v = 20
    s, t, mask, tokens = batch(v=v)
    out = L.eopd_loss(s, t, tokens, mask, temperature=1.1)
    # by hand, token by token
    total, n = 0.0, 0
    for b in range(s.shape[0]):
        for j in range(s.shape[1]):
            if not mask[b, j]:
                continue
            ls = F.log_softmax(s[b, j].detach() / 1.1, -1)
            lt = F.log_softmax(t[b, j] / 1.1, -1)
            o = tokens[b, j]
            adv = (lt[o] - ls[o]).item()
            l_opd = -adv  # r = 1 in value, clip inactive
            ent = -(lt.exp() * lt).sum().item()
            top_v, top_i = torch.topk(t[b, j] / 1.1, 16)
            q = F.log_softmax(top_v, -1)
            l_fkl = (q.exp() * (q - ls[top_i])).sum().item()
            total += l_opd + (l_fkl if ent > 0.8 else 0.0)
            n += 1
    assert out.loss.item() == pytest.approx(total / n, rel=1e-10)
    assert 0.0 <= out.metrics["high_entropy_fraction"] <= 1.0


def test_eopd_gate_closed_for_confident_teacher_and_teacher_equals_student():
    s, _, mask, tokens = batch()
    peaked = s.detach() * 50  # teacher entropy ~0 -> gate closed
    out = L.eopd_loss(peaked.clone().requires_grad_(True), peaked, tokens, mask, temperature=1.0)
    assert out.metrics["high_entropy_fraction"] == 0.0
    assert out.loss.item() == pytest.approx(0.0, abs=1e-12)  # A = 0 when teacher == student


def test_reopold_phases_and_value():
    s, t, mask, tokens = batch(v=9)
    t = t * 4  # make some rewards fall below the floor
    floor = math.log(0.1) / 0.9
    ls = F.log_softmax(s.detach() / 1.1, -1)
    lt = F.log_softmax(t / 1.1, -1)
    lpo = ls.gather(-1, tokens.clamp(min=0)[..., None])[..., 0]
    reward = lt.gather(-1, tokens.clamp(min=0)[..., None])[..., 0] - lpo
    keep1 = (reward >= floor) & mask
    assert keep1.sum() < mask.sum()  # the phase-I mask drops something here
    expect1 = -(reward.clamp(min=floor) * keep1 * lpo).sum() / keep1.sum()
    out1 = L.reopold_loss(s, t, tokens, mask, step=49)
    assert out1.metrics["phase"] == 0.0
    assert out1.loss.item() == pytest.approx(expect1.item(), rel=1e-10)
    ent = -(ls.exp() * ls).sum(-1)
    thr = torch.quantile(ent[mask], 0.8)
    keep2 = (ent >= thr) & mask
    expect2 = -(reward.clamp(min=floor) * keep2 * lpo).sum() / keep2.sum()
    out2 = L.reopold_loss(s, t, tokens, mask, step=50)
    assert out2.metrics["phase"] == 1.0
    assert out2.loss.item() == pytest.approx(expect2.item(), rel=1e-10)
    # gradient flows only through log p_S(o): check against autograd of the by-hand form
    (g,) = torch.autograd.grad(out2.loss, s)
    lpo_g = F.log_softmax(s / 1.1, -1).gather(-1, tokens.clamp(min=0)[..., None])[..., 0]
    (g_ref,) = torch.autograd.grad(
        -(reward.clamp(min=floor) * keep2 * lpo_g).sum() / keep2.sum(), s
    )
    assert torch.allclose(g, g_ref)


def test_method_loss_errors():
    s, t, mask, tokens = batch()
    with pytest.raises(ValueError, match="method must be one of"):
        L.method_loss("gkd", s, t, mask)
    with pytest.raises(ValueError, match="needs tokens"):
        L.method_loss("eopd", s, t, mask)
    with pytest.raises(ValueError, match="step"):
        L.method_loss("reopold", s, t, mask, tokens=tokens, step=-1)
    with pytest.raises(ValueError, match="ids >= the vocab"):
        L.method_loss("eopd", s, t, mask, tokens=tokens.clamp(min=0) + 100)
    negative = tokens.clone()
    negative[0, 0] = -100  # a valid position holding the ignore id
    with pytest.raises(ValueError, match="< 0 at valid positions"):
        L.method_loss("reopold", s, t, mask, tokens=negative)
    with pytest.raises(ValueError, match="weighting"):
        L.factorial_loss(s, t, mask, "linear", "global")


@pytest.mark.parametrize("method", vocab.TRAINABLE_METHODS)
def test_every_method_runs_in_bf16_and_fp32(method):
    for dtype in (torch.float32, torch.bfloat16):
        s, t, mask, tokens = batch(dtype=dtype)
        out = L.method_loss(method, s, t, mask, tokens=tokens, step=10)
        (g,) = torch.autograd.grad(out.loss, s)
        assert torch.isfinite(out.loss) and torch.isfinite(g.float()).all()
        assert g.dtype == dtype


@pytest.mark.parametrize("method", ["opsd", "pw_opsd", "position_global"])
def test_fused_method_loss_matches_logits_path(method):
    g = torch.Generator().manual_seed(7)
    h_s = torch.randn(3, 6, 8, generator=g, dtype=torch.float64, requires_grad=True)
    h_t = torch.randn(3, 6, 8, generator=g, dtype=torch.float64)
    w = torch.randn(29, 8, generator=g, dtype=torch.float64)
    _, _, mask, _ = batch()
    fused = L.fused_method_loss(method, h_s, h_t, w, mask, schedule="mild", chunk_size=4)
    (g_fused,) = torch.autograd.grad(fused.loss, h_s)
    plain = L.method_loss(method, h_s @ w.T, h_t @ w.T, mask, schedule="mild", impl="reference")
    (g_plain,) = torch.autograd.grad(plain.loss, h_s)
    assert fused.loss.item() == pytest.approx(plain.loss.item(), rel=1e-10)
    assert torch.allclose(g_fused, g_plain, atol=1e-12)
    with pytest.raises(ValueError, match="use method_loss"):
        L.fused_method_loss("eopd", h_s, h_t, w, mask)


# --------------------------------------------------------------------------------------
# baselines: garbage at masked positions, EOPD's gradient and its top-k edge
# --------------------------------------------------------------------------------------


def eopd_written_out(s, t, tokens, mask, temperature=1.1, k=16, eps=0.2, h_min=0.8):
    """EOPD per PROTOCOL sec. 2, token by token, plainly (autograd gives the reference gradient).

    Per valid token o: A = log p_T(o) - log p_S(o) (detached), r = exp(log p_S(o) - detached),
    L_OPD = max(-r A, -clip(r, 1 - eps, 1 + eps) A); H = full-vocab teacher entropy;
    L_FKL = sum over the teacher's top-k ids v (those with any mass) of q_v (log q_v - log p_S,v),
    q = the teacher renormalised over its top-k. Loss = mean over valid tokens of
    L_OPD + 1[H > h_min] L_FKL.
    """
    total, n = 0.0, 0
    for b in range(s.shape[0]):
        for j in range(s.shape[1]):
            if not mask[b, j]:
                continue
            log_ps = F.log_softmax(s[b, j] / temperature, -1)
            log_pt = F.log_softmax(t[b, j].detach() / temperature, -1)
            o = int(tokens[b, j])
            adv = (log_pt[o] - log_ps[o]).detach()
            r = torch.exp(log_ps[o] - log_ps[o].detach())
            l_opd = torch.maximum(-r * adv, -torch.clamp(r, 1 - eps, 1 + eps) * adv)
            p_t = log_pt.exp()
            ent = -sum(p_t[v] * log_pt[v] for v in range(len(p_t)) if p_t[v] > 0)
            top_vals, top_ids = torch.topk(t[b, j].detach() / temperature, min(k, t.shape[-1]))
            keep = torch.isfinite(top_vals)  # ids where the teacher has no mass add nothing
            log_q = F.log_softmax(top_vals[keep], -1)
            l_fkl = (log_q.exp() * (log_q - log_ps[top_ids[keep]])).sum()
            total = total + l_opd + (l_fkl if ent > h_min else 0.0)
            n += 1
    return total / max(n, 1)


def eopd_batch(seed=3, v=40):
    """fp64 batch whose teacher is peaked at some tokens and flat at others (both gate branches)."""
    s, t, mask, tokens = batch(seed=seed, v=v)
    g = torch.Generator().manual_seed(seed + 1)
    sharpness = torch.where(torch.rand(t.shape[:2], generator=g) < 0.5, 3.0, 0.2)  # [B, T]
    return s, t * sharpness[..., None], mask, tokens


def test_eopd_value_and_gradient_match_the_written_out_formula():
    s, t, mask, tokens = eopd_batch()
    out = L.eopd_loss(s, t, tokens, mask, temperature=1.1)
    assert 0.0 < out.metrics["high_entropy_fraction"] < 1.0  # both gate branches are exercised
    expect = eopd_written_out(s, t, tokens, mask, temperature=1.1)
    (g,) = torch.autograd.grad(out.loss, s)
    (g_expect,) = torch.autograd.grad(expect, s)
    assert out.loss.item() == pytest.approx(expect.item(), rel=1e-12)
    assert g.abs().max() > 0 and torch.allclose(g, g_expect, rtol=1e-10, atol=1e-14)
    # the L_OPD part alone: its gradient is that of -A log p_S(o), not zero (r = 1 in value only)
    logp_o = F.log_softmax(s / 1.1, -1).gather(-1, tokens.clamp(min=0)[..., None])[..., 0]
    adv = (F.log_softmax(t / 1.1, -1).gather(-1, tokens.clamp(min=0)[..., None])[..., 0]).sub(
        logp_o
    )
    out_opd = L.eopd_loss(s, t, tokens, mask, temperature=1.1, entropy_threshold=math.inf)
    (g_opd,) = torch.autograd.grad(out_opd.loss, s)
    (g_opd_expect,) = torch.autograd.grad(-(adv.detach() * logp_o)[mask].sum() / mask.sum(), s)
    assert g_opd.abs().max() > 0 and torch.allclose(g_opd, g_opd_expect, atol=1e-14)


def test_eopd_teacher_with_fewer_finite_logits_than_top_k():
    s, t, mask, tokens = eopd_batch(v=40)
    t = t * 0.05  # flat teacher: the gate is open everywhere
    t[0, 1, 5:] = -math.inf  # 5 finite logits at a valid token, fewer than the top-16
    t[1, 2, :39] = -math.inf  # a one-hot teacher (one finite logit)
    t[0, 3, 10:] = -math.inf  # 10 finite logits
    tokens[0, 1], tokens[1, 2], tokens[0, 3] = 2, 39, 4  # sampled where the teacher has mass
    out = L.eopd_loss(s, t, tokens, mask, temperature=1.1)
    (g,) = torch.autograd.grad(out.loss, s)
    assert torch.isfinite(out.loss) and torch.isfinite(g).all()
    expect = eopd_written_out(s, t, tokens, mask, temperature=1.1)
    (g_expect,) = torch.autograd.grad(expect, s)
    assert out.loss.item() == pytest.approx(expect.item(), rel=1e-12)
    assert torch.allclose(g, g_expect, rtol=1e-10, atol=1e-14)


def garbage_at_masked_positions(s, t, mask):
    """Copies of (s, t) with NaN, a row of -inf and inf at masked positions only."""
    s, t = s.detach().clone(), t.clone()
    assert not mask[1, 4] and not mask[1, 5] and not mask[2].any()
    s[1, 4], t[1, 5] = math.nan, -math.inf  # padding: NaN student, all -inf teacher
    s[1, 5, 3], t[1, 4, 0] = math.inf, math.nan
    s[2], t[2, 3] = -math.inf, math.nan  # an empty row of garbage
    return s, t


@pytest.mark.parametrize("method,step", [("eopd", 0), ("reopold", 0), ("reopold", 60)])
def test_baselines_ignore_garbage_at_masked_positions(method, step):
    s, t, mask, tokens = eopd_batch()
    dirty_s, dirty_t = garbage_at_masked_positions(s, t, mask)
    clean = L.method_loss(method, s, t, mask, tokens=tokens, step=step)
    (g_clean,) = torch.autograd.grad(clean.loss, s)
    x = dirty_s.requires_grad_(True)
    dirty = L.method_loss(method, x, dirty_t, mask, tokens=tokens, step=step)
    (g,) = torch.autograd.grad(dirty.loss, x)
    assert torch.isfinite(dirty.loss) and torch.isfinite(g).all()
    assert g[~mask].eq(0).all() and g.abs().max() > 0
    assert dirty.loss.item() == pytest.approx(clean.loss.item(), rel=1e-12)
    assert torch.allclose(g, g_clean, rtol=1e-12, atol=0)
    assert dirty.metrics == pytest.approx(clean.metrics, rel=1e-12)


@pytest.mark.parametrize("method,step", [("eopd", 0), ("reopold", 0), ("reopold", 60)])
@pytest.mark.parametrize("side", ["student", "teacher"])
def test_baselines_nan_at_a_valid_token_gives_nan(method, step, side):
    s, t, mask, tokens = eopd_batch()
    s, t = s.detach().clone(), t.clone()
    (s if side == "student" else t)[0, 2, 7] = math.nan
    out = L.method_loss(method, s, t, mask, tokens=tokens, step=step)
    assert out.loss.isnan()


@pytest.mark.parametrize("method", vocab.TRAINABLE_METHODS)
def test_teacher_that_requires_grad_gets_no_gradient_in_every_method(method):
    s, t, mask, tokens = eopd_batch()
    teacher = t.clone().requires_grad_(True)
    out = L.method_loss(method, s, teacher, mask, tokens=tokens, step=60)
    out.loss.backward()
    assert teacher.grad is None and s.grad is not None
    expect = L.method_loss(method, s.detach(), t, mask, tokens=tokens, step=60).loss
    assert out.loss.item() == pytest.approx(expect.item(), rel=1e-12)


def test_method_names_come_from_vocab():
    assert vocab.TRAINABLE_METHODS == (
        *vocab.MAIN_TABLE_METHODS,
        *vocab.FACTORIAL_CELLS,
        *vocab.BEYOND_METHODS,
    )
    assert "pw_opsd" in vocab.TRAINABLE_METHODS and "pwopsd" not in vocab.TRAINABLE_METHODS
    assert set(vocab.CLIPPED_FKL_METHODS) == set(vocab.TRAINABLE_METHODS) - {
        "eopd",
        "reopold",
        *vocab.BEYOND_METHODS,
    }
    assert set(vocab.POSITION_METHODS) == {*vocab.POSITION_WEIGHTED_METHODS, "pw_mix"}
    assert set(vocab.METHOD_LABELS) >= set(vocab.BEYOND_METHODS)
    assert vocab.CLIPPED_FKL_METHODS["opsd"] == vocab.FACTORIAL_CELLS["uniform_global"]
    assert vocab.CLIPPED_FKL_METHODS["pw_opsd"] == vocab.FACTORIAL_CELLS["position_per_sequence"]
    # one home: the losses no longer carry copies of the vocabulary or the dead opsd_loss
    for name in ("METHODS", "SCHEDULES", "FACTORIAL_CELLS", "opsd_loss", "pwopsd_loss"):
        assert not hasattr(L, name)


@pytest.mark.parametrize("method", ["pw_opsd", "position_global"])
def test_position_methods_report_the_weights_they_used(method):
    """The loss reports w(u) over valid tokens (mean, min, max) as the training loop logs them:
    checked against a float64 recomputation, padding excluded, absent when no token is valid."""
    torch.manual_seed(0)
    s, t = torch.randn(3, 7, 11), torch.randn(3, 7, 11)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [0] * 7], dtype=torch.bool)
    out = L.method_loss(method, s, t, mask, schedule="sharp")
    w_min, c, s_ = vocab.SCHEDULES["sharp"]
    weights = []
    for row in mask:
        n = int(row.sum())
        u = (torch.arange(1, n + 1, dtype=torch.float64) - 0.5) / max(n, 1)
        weights.append(w_min + (1 - w_min) * torch.sigmoid((u - c) / s_))
    ref = torch.cat(weights)
    m = out.metrics
    assert m["position_weight_mean"] == pytest.approx(float(ref.mean()), rel=1e-6)
    assert m["position_weight_min"] == pytest.approx(float(ref.min()), rel=1e-6)
    assert m["position_weight_max"] == pytest.approx(float(ref.max()), rel=1e-6)
    assert m["position_weight_max"] < 1.0 and m["position_weight_min"] >= w_min
    empty = L.method_loss(method, s, t, torch.zeros_like(mask), schedule="sharp").metrics
    assert "position_weight_min" not in empty and "position_weight_max" not in empty
    assert "position_weight_mean" not in L.method_loss("opsd", s, t, mask).metrics
