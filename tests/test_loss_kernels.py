"""pwopsd.kernels: chunked, fused-linear and Triton clipped FKL against the plain oracle."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from pwopsd import losses as L
from pwopsd import vocab
from pwopsd.config import REPO_ROOT
from pwopsd.kernels.chunked import chunked_clipped_fkl, weighted_chunked_clipped_fkl
from pwopsd.kernels.fused_linear import fused_linear_clipped_fkl

TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2}


def logits(b, t, v, dtype, seed=0, masked_vocab=True):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, t, v, generator=g, dtype=torch.float64) * 2.5
    te = s + torch.randn(b, t, v, generator=g, dtype=torch.float64) * 1.5
    if masked_vocab:
        te[0, 0, : v // 3] = -math.inf  # teacher masks part of the vocabulary
        s[-1, -1, 1 : v // 4] = -math.inf  # student gives 0 mass where the teacher does not
    return s.to(dtype), te.to(dtype)


def rel(x, ref):
    x, ref = x.detach().double(), ref.detach().double()
    return float((x - ref).abs().max() / ref.abs().max().clamp(min=1e-12))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature,tau,chunk", [(1.1, 0.05, 4), (1.0, None, 5), (0.7, 0.3, 64)])
def test_chunked_matches_oracle(dtype, temperature, tau, chunk):
    s, t = logits(3, 7, 53, dtype)
    upstream = torch.randn(3, 7, dtype=torch.float64)
    x = s.clone().requires_grad_(True)
    ref = L.reference_per_token_clipped_fkl(x, t, temperature, tau)
    (g_ref,) = torch.autograd.grad((ref * upstream.to(ref.dtype)).sum(), x)
    y = s.clone().requires_grad_(True)
    out = chunked_clipped_fkl(y, t, temperature, tau, chunk_size=chunk, compile=False)
    (g,) = torch.autograd.grad((out * upstream.to(out.dtype)).sum(), y)
    assert out.shape == (3, 7) and g.dtype == dtype
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(out))  # tau=None: the same +inf tokens
    assert rel(out[finite], ref[finite]) <= TOL[dtype]
    assert torch.isfinite(g.float()).all()
    if tau is not None:  # with an inf token and no clip the gradient is meaningless
        assert rel(g, g_ref) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_weighted_chunked_matches_reduce_tokens(dtype):
    s, t = logits(3, 9, 41, dtype, seed=1)
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [0] * 9], dtype=torch.bool)
    s[~mask] = math.nan  # garbage at padding must not leak into the loss or the gradient
    w = L.position_weights(mask, *vocab.SCHEDULES["sharp"])
    fp = torch.float64 if dtype == torch.float64 else torch.float32
    for per_seq in (False, True):
        x = s.clone().requires_grad_(True)
        ref = L.reduce_tokens(L.reference_per_token_clipped_fkl(x, t), mask, w, per_seq)
        (g_ref,) = torch.autograd.grad(ref, x)
        y = s.clone().requires_grad_(True)
        coeff = L.token_coefficients(mask, w, per_seq, fp)
        total, per_token = weighted_chunked_clipped_fkl(y, t, coeff, chunk_size=4, compile=False)
        (g,) = torch.autograd.grad(total * 3.0, y)  # a non-unit upstream scalar
        assert not per_token.requires_grad
        assert per_token.reshape(-1)[20:24].eq(0).all()  # an all-padding chunk is skipped
        assert abs(total.item() - ref.item()) <= TOL[dtype] * abs(ref.item())
        assert torch.isfinite(g).all() and g[~mask].eq(0).all()
        assert rel(g, 3.0 * g_ref.nan_to_num(0.0)) <= TOL[dtype]


def test_all_masked_batch_and_per_token_zero_upstream():
    s, t = logits(2, 4, 17, torch.float32)
    s[1] = math.nan  # a whole padded row of garbage
    x = s.clone().requires_grad_(True)
    total, _ = weighted_chunked_clipped_fkl(x, t, torch.zeros(2, 4), compile=False)
    (g,) = torch.autograd.grad(total, x)
    assert total.item() == 0.0 and g.eq(0).all()
    y = s.clone().requires_grad_(True)
    out = chunked_clipped_fkl(y, t, chunk_size=3, compile=False)
    mask = torch.tensor([[True] * 4, [False] * 4])
    (g,) = torch.autograd.grad(L.reduce_tokens(out, mask), y)
    assert torch.isfinite(g).all() and g[1].eq(0).all() and g[0].abs().sum() > 0


def test_gradcheck_fp64_tiny():
    s, t = logits(2, 3, 9, torch.float64, seed=3, masked_vocab=False)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    coeff = L.token_coefficients(mask, L.position_weights(mask), True, torch.float64)
    x = s.clone().requires_grad_(True)
    # tau large enough that no entry sits at the clip's kink (gradcheck needs smoothness there)
    assert torch.autograd.gradcheck(
        lambda a: chunked_clipped_fkl(a, t, 1.1, 0.3, chunk_size=2, compile=False), (x,)
    )

    # the weighted path consumes its stored gradient (one backward per graph): central differences
    def f(a):
        return weighted_chunked_clipped_fkl(a, t, coeff, 1.3, 0.3, chunk_size=4, compile=False)[0]

    (g,) = torch.autograd.grad(f(x), x)
    for idx in [(0, 0, 0), (0, 2, 5), (1, 1, 8), (1, 2, 3)]:
        e = torch.zeros_like(s)
        e[idx] = 1e-6
        fd = (f(s + e) - f(s - e)).item() / 2e-6
        assert g[idx].item() == pytest.approx(fd, rel=1e-6, abs=1e-10)
    assert g[1, 2].eq(0).all()  # masked token
    h_s = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    h_t = torch.randn(2, 3, 5, dtype=torch.float64)
    w = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    w_teacher = w.detach().clone()  # the teacher pass is a constant even when it shares the lm_head
    assert torch.autograd.gradcheck(
        lambda a, b: fused_linear_clipped_fkl(
            a, h_t, b, coeff, 1.1, 0.3, teacher_weight=w_teacher, chunk_size=4, compile=False
        )[0],
        (h_s, w),
    )


def test_clip_actually_active_in_these_tests():
    s, t = logits(3, 7, 53, torch.float64)
    assert (
        L.reference_per_token_clipped_fkl(s, t, 1.1, 0.05)
        .lt(L.reference_per_token_clipped_fkl(s, t, 1.1, None))
        .any()
    )


@pytest.mark.parametrize("separate_teacher_weight", [False, True])
def test_fused_linear_matches_oracle_linear(separate_teacher_weight):
    g = torch.Generator().manual_seed(5)
    b, t, h, v = 2, 11, 24, 97
    h_s = torch.randn(b, t, h, generator=g)
    h_t = h_s + 0.3 * torch.randn(b, t, h, generator=g)
    w = torch.randn(v, h, generator=g) * 0.6
    w_t = w + 0.1 * torch.randn(v, h, generator=g) if separate_teacher_weight else None
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, 7:] = False
    coeff = L.token_coefficients(mask, L.position_weights(mask), per_sequence=True)
    a, wa = h_s.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ref = (
        L.reference_per_token_clipped_fkl(a @ wa.T, h_t @ (w if w_t is None else w_t).T) * coeff
    ).sum()
    ga, gwa = torch.autograd.grad(ref, (a, wa))
    c, wc = h_s.clone().requires_grad_(True), w.clone().requires_grad_(True)
    total, per_token = fused_linear_clipped_fkl(
        c, h_t, wc, coeff, teacher_weight=w_t, chunk_size=4, compile=False
    )
    gc, gwc = torch.autograd.grad(2.0 * total, (c, wc))
    assert abs(total.item() - ref.item()) <= 1e-5 * abs(ref.item())
    assert per_token.shape == (b, t)
    assert rel(gc, 2 * ga) <= 1e-5 and rel(gwc, 2 * gwa) <= 1e-5
    # frozen lm_head: no weight gradient is formed
    d = h_s.clone().requires_grad_(True)
    total, _ = fused_linear_clipped_fkl(
        d, h_t, w, coeff, teacher_weight=w_t, chunk_size=8, compile=False
    )
    total.backward()
    assert rel(d.grad, ga) <= 1e-5


def test_kernel_input_errors():
    s, t = logits(1, 2, 8, torch.float32)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_clipped_fkl(s, t, chunk_size=0)
    with pytest.raises(ValueError, match="vocab sizes"):
        chunked_clipped_fkl(s, t[..., :7])
    with pytest.raises(ValueError, match="coefficients must have shape"):
        weighted_chunked_clipped_fkl(s, t, torch.ones(3))
    with pytest.raises(ValueError, match="compile"):
        chunked_clipped_fkl(s, t, compile="yes")
    h = torch.zeros(1, 2, 4)
    with pytest.raises(ValueError, match=r"weight must be \[V, H\]"):
        fused_linear_clipped_fkl(h, h, torch.zeros(8, 5), torch.ones(1, 2))
    with pytest.raises(ValueError, match="teacher_weight"):
        fused_linear_clipped_fkl(
            h, h, torch.zeros(8, 4), torch.ones(1, 2), teacher_weight=torch.zeros(9, 4)
        )


def test_double_backward_refused_on_weighted_path_allowed_on_per_token():
    s, t = logits(1, 2, 8, torch.float32)
    x = s.clone().requires_grad_(True)
    loss, _ = weighted_chunked_clipped_fkl(x, t, torch.ones(1, 2), compile=False)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()
    y = s.clone().requires_grad_(True)
    loss = chunked_clipped_fkl(y, t, compile=False).sum()
    loss.backward(retain_graph=True)
    first = y.grad.clone()
    loss.backward()
    assert torch.allclose(y.grad, 2 * first)


def test_loss_only_path_without_grad():
    s, t = logits(2, 3, 19, torch.float32)
    with torch.no_grad():
        out = chunked_clipped_fkl(s, t, chunk_size=2, compile=False)
    assert torch.allclose(out, L.reference_per_token_clipped_fkl(s, t), atol=1e-6)


def test_triton_kernel_in_interpreter():
    """The Triton kernel itself, run by Triton's CPU interpreter through the GPU check script."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            str(REPO_ROOT / "scripts" / "check_triton.py"),
            "--interpret",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "correctness: PASS" in proc.stdout


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_on_cuda_matches_oracle():
    from pwopsd.kernels.triton_fkl import triton_clipped_fkl

    s, t = logits(4, 16, 1000, torch.float32)
    s, t = s.cuda().requires_grad_(True), t.cuda()
    ref = L.reference_per_token_clipped_fkl(s, t)
    (g_ref,) = torch.autograd.grad(ref.sum(), s)
    out = triton_clipped_fkl(s, t)
    (g,) = torch.autograd.grad(out.sum(), s)
    assert rel(out, ref) <= 1e-5 and rel(g, g_ref) <= 1e-5
    assert L.per_token_clipped_fkl(s.detach(), t).allclose(
        ref.detach(), atol=1e-5
    )  # "auto" picks Triton


@pytest.mark.slow
def test_compiled_chunk_body_matches_eager():
    """torch.compile'd chunk body (inductor; tens of seconds to compile) vs the eager one."""
    s, t = logits(2, 64, 4096, torch.float32)
    mask = torch.ones(2, 64, dtype=torch.bool)
    coeff = L.token_coefficients(mask, L.position_weights(mask), True)
    grads = []
    for compile in (False, True):
        x = s.clone().requires_grad_(True)
        total, _ = weighted_chunked_clipped_fkl(
            x, t, coeff, chunk_size=48, compile=compile
        )  # tail chunk too
        total.backward()
        grads.append((total.item(), x.grad))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    assert rel(grads[1][1], grads[0][1]) <= 1e-5


@pytest.mark.parametrize("tau", [0.05, None, -0.02])
def test_inplace_eager_body_equals_functional_body(tau):
    from pwopsd.kernels.chunked import fkl_chunk, fkl_chunk_inplace

    s, t = logits(1, 6, 31, torch.float64)
    s, t = s[0], t[0]  # [6, 31]
    t[2, :] = -math.inf
    t[2, 3] = 1.0  # a one-hot teacher row
    s[4] = math.nan  # garbage row with coefficient 0
    s[1, 7] = math.nan  # NaN in rows that count: it must reach the loss, in both bodies
    t[5, 2] = math.nan
    coeff = torch.tensor([1.0, 0.5, 2.0, 1.0, 0.0, 0.3], dtype=torch.float64)
    loss_a, grad_a = fkl_chunk(s, t, coeff, 1 / 1.1, tau)
    loss_b, grad_b = fkl_chunk_inplace(s, t, coeff, 1 / 1.1, tau)
    keep = coeff != 0
    # equal infinities count as close, NaN only where both are NaN
    assert torch.allclose(loss_a[keep], loss_b[keep], atol=1e-12, equal_nan=True)
    assert loss_a[[1, 5]].isnan().all() and loss_b[[1, 5]].isnan().all()
    assert torch.isfinite(loss_b[[0, 2, 3]]).all()
    clean = [0, 2, 3]
    assert torch.isfinite(grad_b[clean]).all() and grad_b[4].eq(0).all()
    assert grad_a[[1, 5]].isnan().any(1).all() and grad_b[[1, 5]].isnan().any(1).all()
    if tau is not None:
        assert torch.allclose(grad_a, grad_b, atol=1e-12, equal_nan=True)


# --------------------------------------------------------------------------------------
# Edge cases: every CPU implementation behaves the same (values and gradients)
# --------------------------------------------------------------------------------------

EDGE_CASES = ("clean", "nan_valid_student", "nan_valid_teacher", "nan_padding", "neginf_padding")
EDGE_CASES_ALL_MASKED = ("all_masked_clean", "all_masked_garbage")


def edge_case(name: str, dtype: torch.dtype):
    """[3, 6, 11] logits, mask with a full row, a padded row (4 valid) and an empty row (row 2).

    Returns (student, teacher, mask, nan_token or None); the "clean" inputs are the same call
    with name="clean". Garbage goes into the padding and the empty row, NaN into a valid token.
    """
    s, t = logits(3, 6, 11, dtype, seed=4, masked_vocab=False)
    t[0, 0, :3] = -math.inf  # masked vocabulary at a valid token (a legal input)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [0] * 6], dtype=torch.bool)
    nan_token = None
    if name == "nan_valid_student":
        s[0, 2, 5], nan_token = math.nan, (0, 2)
    elif name == "nan_valid_teacher":
        t[1, 1, 3], nan_token = math.nan, (1, 1)
    elif name in ("nan_padding", "all_masked_garbage"):
        s[1, 4], t[1, 5, 2], s[2], t[2, 3] = math.nan, math.nan, math.nan, math.nan
    elif name == "neginf_padding":
        s[1, 5], t[1, 4], s[2, 0], t[2] = -math.inf, -math.inf, -math.inf, -math.inf
    if name.startswith("all_masked"):
        mask[:] = False
    return s, t, mask, nan_token


def _weighted(impl: str, chunk_size: int = 4):
    """A runner through :func:`pwopsd.losses.weighted_clipped_fkl` (what method_loss runs)."""

    def run(s, t, mask, method):
        weighting, reduction = vocab.CLIPPED_FKL_METHODS[method]
        coeff, _ = L.method_coefficients(mask, weighting, reduction, "sharp", torch.float64)
        return L.weighted_clipped_fkl(s, t, coeff, impl=impl, chunk_size=chunk_size)[0]

    return run


def _per_token_chunked(s, t, mask, method):
    """The per-token path (PerTokenFKL, backward scales by the upstream gradient), then reduce."""
    weighting, reduction = vocab.CLIPPED_FKL_METHODS[method]
    w = L.position_weights(mask, *vocab.SCHEDULES["sharp"]) if weighting == "position" else None
    per_token = L.per_token_clipped_fkl(s, t, impl="chunked", chunk_size=4)
    return L.reduce_tokens(per_token, mask, w, per_sequence=reduction == "per_sequence")


def _fused_linear(s, t, mask, method):
    """Hidden states = the logits and an identity lm_head: the same inputs, the fused kernel.

    A linear layer cannot output -inf (``-inf * 0`` is NaN), so a masked-vocabulary entry at a
    valid token becomes -1e4 (``p = 0`` all the same); padding garbage is passed as is.
    """
    eye = torch.eye(s.shape[-1], dtype=s.dtype)
    valid = mask.unsqueeze(-1)  # [B, T, 1]
    s = torch.where(valid & s.isneginf(), -1e4, s)
    t = torch.where(valid & t.isneginf(), -1e4, t)
    return L.fused_method_loss(method, s, t, eye, mask, schedule="sharp", chunk_size=4).loss


CPU_IMPLS = {
    "reference": _weighted("reference"),
    "chunked": _weighted("chunked"),  # eager, in-place chunk body (PWOPSD_COMPILE=0)
    "chunked_functional": _weighted("chunked"),  # the body torch.compile compiles, run eager
    "chunked_per_token": _per_token_chunked,
    "fused_linear": _fused_linear,
}


@pytest.fixture
def impl_runner(request, monkeypatch):
    """The runner of one implementation, with the environment it needs."""
    from pwopsd.kernels import chunked

    name = request.param
    monkeypatch.setenv("PWOPSD_COMPILE", "1" if name == "chunked_compiled" else "0")
    if name == "chunked_functional":
        monkeypatch.setitem(chunked.EAGER_BODIES, "fkl_chunk_into", chunked.fkl_chunk_into)
    return _weighted("chunked") if name == "chunked_compiled" else CPU_IMPLS[name]


def loss_and_grad(run, s, t, mask, method):
    x = s.clone().requires_grad_(True)
    loss = run(x, t.clone(), mask, method)
    (g,) = torch.autograd.grad(loss, x)
    return loss.detach(), g


def check_edge_case(run, case, dtype, method):
    s, t, mask, nan_token = edge_case(case, dtype)
    loss, g = loss_and_grad(run, s, t, mask, method)
    with torch.no_grad():  # the value-only path (no gradient formed) must agree
        loss_no_grad = run(s, t, mask, method)
    assert torch.allclose(loss_no_grad, loss, rtol=1e-12, atol=0, equal_nan=True)
    if case.startswith("all_masked"):
        assert loss.item() == 0.0 and g.eq(0).all()
        return
    if nan_token is not None:  # a NaN at a token that counts is never hidden
        assert loss.isnan(), case
        assert g[nan_token].isnan().any()
        others = mask.clone()
        others[nan_token] = False
        assert torch.isfinite(g[others]).all() and g[~mask].eq(0).all()
        return
    # padding garbage: the value and the gradient equal those of the clean inputs
    s0, t0, _, _ = edge_case("clean", dtype)
    loss0, g0 = loss_and_grad(run, s0, t0, mask, method)
    ref0, g_ref0 = loss_and_grad(CPU_IMPLS["reference"], s0, t0, mask, method)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    assert g[~mask].eq(0).all()
    assert loss.item() == pytest.approx(loss0.item(), rel=1e-12)
    assert torch.allclose(g, g0, rtol=0, atol=1e-12 * float(g0.abs().max()))
    assert abs(loss.item() - ref0.item()) <= TOL[dtype] * abs(ref0.item())
    assert rel(g, g_ref0) <= TOL[dtype]


@pytest.mark.parametrize("method", ["opsd", "pw_opsd"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", EDGE_CASES + EDGE_CASES_ALL_MASKED)
@pytest.mark.parametrize("impl_runner", list(CPU_IMPLS), indirect=True)
def test_every_implementation_handles_nan_and_padding_alike(impl_runner, case, dtype, method):
    check_edge_case(impl_runner, case, dtype, method)


@pytest.mark.slow
@pytest.mark.parametrize("case", EDGE_CASES + ("all_masked_garbage",))
@pytest.mark.parametrize("impl_runner", ["chunked_compiled"], indirect=True)
def test_compiled_chunk_body_handles_nan_and_padding_alike(impl_runner, case):
    """The same cases through the torch.compile'd chunk body (inductor; compiles once)."""
    check_edge_case(impl_runner, case, torch.float32, "pw_opsd")


@pytest.mark.parametrize("impl_runner", list(CPU_IMPLS), indirect=True)
def test_teacher_that_requires_grad_is_a_constant_everywhere(impl_runner):
    s, t, mask, _ = edge_case("clean", torch.float64)
    loss0, g0 = loss_and_grad(impl_runner, s, t, mask, "pw_opsd")
    x = s.clone().requires_grad_(True)
    teacher = t.clone().requires_grad_(True)  # e.g. a teacher pass run outside no_grad
    loss = impl_runner(x, teacher, mask, "pw_opsd")
    loss.backward()
    assert teacher.grad is None  # no gradient flows into the teacher, and no error
    assert loss.item() == pytest.approx(loss0.item(), rel=1e-12)
    assert torch.allclose(x.grad, g0, rtol=0, atol=1e-15)


def test_fused_linear_teacher_weight_that_requires_grad_is_a_constant():
    g = torch.Generator().manual_seed(2)
    h_s = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    h_t = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w_t = (w.detach() + 0.1).requires_grad_(True)
    coeff = torch.full((2, 3), 1 / 6, dtype=torch.float64)
    total, _ = fused_linear_clipped_fkl(h_s, h_t, w, coeff, teacher_weight=w_t, compile=False)
    total.backward()
    assert h_t.grad is None and w_t.grad is None
    assert h_s.grad is not None and w.grad is not None
    ref = (L.reference_per_token_clipped_fkl(h_s @ w.T, h_t @ w_t.T) * coeff).sum()
    assert total.item() == pytest.approx(ref.item(), rel=1e-12)


@pytest.mark.parametrize("garbage", [math.nan, -math.inf])
def test_fused_linear_weight_gradient_ignores_padding_garbage(garbage):
    g = torch.Generator().manual_seed(8)
    h_s = torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    h_t = h_s + 0.3 * torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    w = torch.randn(13, 6, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    coeff = L.token_coefficients(mask, L.position_weights(mask), True, torch.float64)
    dirty_s, dirty_t = h_s.clone(), h_t.clone()
    dirty_s[1, 2:], dirty_t[1, 3] = garbage, garbage  # padding hidden states: garbage
    grads = []
    for a, b in ((h_s, h_t), (dirty_s, dirty_t)):
        x, wx = a.clone().requires_grad_(True), w.clone().requires_grad_(True)
        total, _ = fused_linear_clipped_fkl(x, b, wx, coeff, chunk_size=3, compile=False)
        grads.append((total.item(), *torch.autograd.grad(total, (x, wx))))
    (v0, gh0, gw0), (v1, gh1, gw1) = grads
    assert torch.isfinite(gw1).all() and torch.isfinite(gh1).all() and gh1[~mask].eq(0).all()
    assert v1 == pytest.approx(v0, rel=1e-12)
    assert torch.allclose(gh1, gh0, rtol=1e-12, atol=0) and torch.allclose(gw1, gw0, rtol=1e-12)


# --------------------------------------------------------------------------------------
# Dispatch: unsupported inputs go to chunked; only genuine kernel failures switch Triton off
# --------------------------------------------------------------------------------------


@pytest.fixture
def fake_triton(monkeypatch):
    """Pretend Triton runs on this device; the kernel entry points are stubs that record calls.

    The stubs compute with the chunked kernel (so results are real) unless ``fail`` holds an
    exception to raise. Everything else is the real dispatch code.
    """
    from pwopsd.kernels import dispatch, triton_fkl

    state = {"calls": [], "fail": None}

    def stub(real):
        def run(student, teacher, *args, **kwargs):
            state["calls"].append((real.__name__, student.dtype))
            if state["fail"] is not None:
                raise state["fail"]
            return real(student, teacher, *args, compile=False, **kwargs)

        return run

    monkeypatch.setattr(dispatch, "TRITON_FAILURES", [])
    monkeypatch.setattr(dispatch, "triton_available", lambda device=None: True)
    # the CPU tensors of this test count as Triton-capable; the dtype check stays real
    real_reason = triton_fkl.unsupported_reason
    monkeypatch.setattr(
        triton_fkl,
        "unsupported_reason",
        lambda s, t: None if s.dtype in triton_fkl.SUPPORTED_DTYPES else real_reason(s, t),
    )
    monkeypatch.setattr(
        triton_fkl, "weighted_triton_clipped_fkl", stub(weighted_chunked_clipped_fkl)
    )
    monkeypatch.setattr(triton_fkl, "triton_clipped_fkl", stub(chunked_clipped_fkl))
    state["dispatch"] = dispatch
    return state


def test_dispatch_sends_fp64_to_chunked_without_switching_triton_off(fake_triton):
    dispatch = fake_triton["dispatch"]
    s32, t32 = logits(2, 3, 17, torch.float32)
    mask = torch.ones(2, 3, dtype=torch.bool)
    out = L.method_loss("pw_opsd", s32, t32, mask)  # impl="auto"
    assert fake_triton["calls"] == [("weighted_chunked_clipped_fkl", torch.float32)]
    ref = L.method_loss("pw_opsd", s32, t32, mask, impl="reference").loss
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    # an fp64 call goes to chunked: the stub is not called and nothing is recorded
    s64, t64 = logits(2, 3, 17, torch.float64)
    L.method_loss("opsd", s64, t64, mask)
    L.per_token_clipped_fkl(s64, t64)
    assert len(fake_triton["calls"]) == 1 and dispatch.TRITON_FAILURES == []
    assert dispatch.choose_impl("auto", s64, t64) == "chunked"
    # ... and the next supported call still goes to Triton
    L.per_token_clipped_fkl(s32, t32)
    assert fake_triton["calls"][-1] == ("chunked_clipped_fkl", torch.float32)
    assert dispatch.choose_impl("auto", s32, t32) == "triton"
    # explicit impl="triton" on fp64 is refused with a clear error, still nothing recorded
    with pytest.raises(ValueError, match="impl='triton' cannot take these inputs.*float64"):
        L.method_loss("opsd", s64, t64, mask, impl="triton")
    assert dispatch.TRITON_FAILURES == []


def test_dispatch_records_only_genuine_kernel_failures(fake_triton):
    dispatch = fake_triton["dispatch"]
    s, t = logits(2, 3, 17, torch.float32)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    expect = L.method_loss("opsd", s, t, mask, impl="chunked").loss
    # CUDA out of memory is not a kernel failure: it propagates, Triton stays on
    fake_triton["fail"] = torch.cuda.OutOfMemoryError("out of memory")
    with pytest.raises(torch.cuda.OutOfMemoryError):
        L.method_loss("opsd", s, t, mask)
    assert dispatch.TRITON_FAILURES == []
    # explicit impl="triton": a kernel failure raises and is not papered over
    fake_triton["fail"] = RuntimeError("kernel failed to compile")
    with pytest.raises(RuntimeError, match="failed to compile"):
        L.method_loss("opsd", s, t, mask, impl="triton")
    # impl="auto": one warning, the chunked result, Triton off for the rest of the process
    with pytest.warns(UserWarning, match="using the chunked kernel"):
        out = L.method_loss("opsd", s, t, mask)
    assert out.loss.item() == pytest.approx(expect.item(), rel=1e-6)
    assert len(dispatch.TRITON_FAILURES) == 1 and "failed to compile" in dispatch.TRITON_FAILURES[0]
    n_calls = len(fake_triton["calls"])
    L.method_loss("opsd", s, t, mask)
    assert len(fake_triton["calls"]) == n_calls  # not tried again
    assert dispatch.choose_impl("auto", s, t) == "chunked"


def test_choose_impl_without_triton_and_bad_names():
    from pwopsd.kernels import dispatch

    s, t = logits(1, 2, 5, torch.float32)
    if not torch.cuda.is_available():
        assert dispatch.choose_impl("auto", s, t) == "chunked"
    assert not dispatch.triton_available("cpu")
    assert dispatch.choose_impl("reference", s, t) == "reference"
    with pytest.raises(ValueError, match="impl must be one of"):
        dispatch.choose_impl("fast", s, t)
    reason = dispatch.triton_unsupported_reason(s.double(), t.double())
    assert reason is not None and "float64" in reason
