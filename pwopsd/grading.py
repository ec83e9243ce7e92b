"""Answer extraction and grading (PROTOCOL section 4), serially or in a pool of worker processes.

* Answer = the content of the last ``\\boxed{...}``, braces matched. No box, an unclosed box
  or an empty box is INVALID (``None``).
* Correct = math_verify ``verify(gold, pred)`` with both sides wrapped in ``$...$`` (when they
  carry no ``$`` already, as the reference evaluator does), parsed with ``fallback_mode=
  "no_fallback"``, a 5 s timeout on each parse and on the comparison; when parsing fails
  (an exception, or math_verify returning no parse for either side) the verdict falls back
  to normalised string equality: ``$`` and spaces removed, lower case.

math_verify enforces its timeouts with SIGALRM, which only works in a process's main thread
and cannot interrupt C code (a huge integer power, say). So bulk grading runs in worker
processes (:class:`GradingPool`): each worker grades in its own main thread, and a watchdog
in the parent kills a worker whose current sample overruns ``hard_timeout_s`` and records
that sample as graded by the string fallback. One answer can never hang or crash a run.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from math_verify import parse, verify
from tqdm.auto import tqdm

TIMEOUT_S = 5
"""math_verify timeout (seconds) for each parse and for the comparison (PROTOCOL section 4)."""

BOXED = "\\boxed"

BOOT_TIMEOUT_S = 120.0
"""How long a grading worker may take to start (spawn, imports) before it is replaced. Its
pairs' ``hard_timeout_s`` clock starts only once it has started: a slow start on a busy
machine is not a pair's fault."""

_READY = "ready"
"""A worker's first message: imports done, grading can start."""

# math_verify logs a warning for every timeout; the verdict already records it. Module level,
# so it also holds in the pool's spawned workers, which import this module to find their target.
logging.getLogger("math_verify").setLevel(logging.ERROR)


# --------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------


def extract_answer(completion: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (brace matched, stripped); ``None`` = INVALID.

    Scans from the last occurrence of ``\\boxed``: it must be followed directly by ``{`` and
    its braces must close; otherwise (and for an empty box) the sample is INVALID, even
    when an earlier box was well formed, as in the reference evaluator.
    """
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    start = completion.rfind(BOXED)
    if start < 0:
        return None
    open_at = start + len(BOXED)
    if open_at >= len(completion) or completion[open_at] != "{":
        return None
    depth = 0
    for i in range(open_at, len(completion)):
        ch = completion[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                answer = completion[open_at + 1 : i].strip()
                return answer or None
    return None


# --------------------------------------------------------------------------------------
# Grading one pair (in the calling process: must be its main thread)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Outcome of grading one (answer, gold) pair."""

    correct: bool
    method: str
    """"invalid" (no answer), "math_verify", "string" (parse failed: fallback), or
    "killed" (the worker overran the hard timeout: string fallback)."""
    seconds: float = 0.0


def normalise(text: str) -> str:
    """The fallback's normal form: ``$`` and spaces removed, lower case (PROTOCOL section 4)."""
    return text.replace("$", "").replace(" ", "").lower().strip()


def _wrap(text: str) -> str:
    return text if "$" in text else f"${text}$"


def grade_pair(answer: str | None, gold: str, timeout_s: int = TIMEOUT_S) -> Verdict:
    """Grade one pair here; math_verify's SIGALRM timeouts need the main thread."""
    t0 = time.perf_counter()
    if answer is None or not str(answer).strip():
        return Verdict(False, "invalid", 0.0)
    answer, gold = str(answer), str(gold)
    pred_w, gold_w = _wrap(answer), _wrap(gold)
    try:
        pred_parsed = parse(pred_w, fallback_mode="no_fallback", parsing_timeout=timeout_s)
        gold_parsed = parse(gold_w, fallback_mode="no_fallback", parsing_timeout=timeout_s)
        if pred_parsed and gold_parsed:
            ok = bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout_s))
            return Verdict(ok, "math_verify", time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - any parser failure means "use the fallback"
        if "main thread" in str(e):
            raise RuntimeError(
                "math_verify's timeouts need the main thread: use GradingPool from threads"
            ) from e
    ok = normalise(pred_w) == normalise(gold_w)
    return Verdict(ok, "string", time.perf_counter() - t0)


def is_correct(answer: str | None, gold: str) -> bool:
    """True when ``answer`` is math-equivalent to ``gold`` (PROTOCOL section 4).

    In the main thread this grades in-process, with math_verify's own 5 s timeouts (which
    cannot interrupt a hang inside C code; bulk grading should use :class:`GradingPool`,
    whose watchdog can). From any other thread it goes through a shared one-worker pool
    (math_verify's SIGALRM timeouts need a main thread).
    """
    if answer is None:
        return False
    if threading.current_thread() is threading.main_thread():
        return grade_pair(answer, gold).correct
    return _shared_pool().grade([(answer, gold)])[0].correct


_SHARED: GradingPool | None = None
_SHARED_LOCK = threading.Lock()


def _shared_pool() -> GradingPool:
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = GradingPool(workers=1)
        return _SHARED


# --------------------------------------------------------------------------------------
# Worker-process pool with a watchdog
# --------------------------------------------------------------------------------------


def _worker_main(conn: Connection, timeout_s: int) -> None:
    """Worker loop: receive chunks of (key, answer, gold), send one result per pair.

    A spawned worker imports this module (and so math_verify, and the logger level above) to
    find this function; it then says it is ready, which starts the watchdog's clock."""
    conn.send(_READY)
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for key, answer, gold in chunk:
            try:
                v = grade_pair(answer, gold, timeout_s)
            except Exception:  # noqa: BLE001 - never let one pair kill the worker
                ok = answer is not None and normalise(_wrap(answer)) == normalise(_wrap(gold))
                v = Verdict(ok, "string")
            conn.send((key, v.correct, v.method, v.seconds))


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext, timeout_s: int) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, timeout_s), daemon=True)
        self.proc.start()
        child.close()
        self.outstanding: deque[tuple[int, str | None, str]] = deque()
        self.last_progress = time.monotonic()
        self.ready = False

    def overran(self, now: float, hard_timeout_s: float) -> bool:
        """True when the pair it works on (or its start) has taken too long."""
        limit = hard_timeout_s if self.ready else BOOT_TIMEOUT_S
        return bool(self.outstanding) and now - self.last_progress > limit

    def send(self, chunk: list[tuple[int, str | None, str]]) -> None:
        if not self.outstanding:
            self.last_progress = time.monotonic()
        self.outstanding.extend(chunk)
        self.conn.send(chunk)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=2)
        self.conn.close()


class GradingPool:
    """Grade many (answer, gold) pairs in ``workers`` processes, each pair at most once.

    ``hard_timeout_s`` bounds one pair's wall time; it defaults to three math_verify
    timeouts (two parses and the comparison) plus one second, so it only fires when
    math_verify's own alarms cannot (C-level hangs). An overrun kills and replaces the
    worker and grades that pair by the string fallback (method "killed"). A worker's start
    (spawn, imports) does not count against its first pair (see :data:`BOOT_TIMEOUT_S`).
    Verdicts are cached per pair for the pool's lifetime. Use as a context manager.
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout_s: int = TIMEOUT_S,
        hard_timeout_s: float | None = None,
        chunk_size: int = 16,
    ) -> None:
        if workers is None:
            workers = max(1, min(os.cpu_count() or 1, 8))
        if workers < 1:
            raise ValueError(f"workers={workers} must be >= 1")
        if timeout_s < 1:
            raise ValueError(f"timeout_s={timeout_s} must be >= 1 (math_verify uses whole seconds)")
        self.n_workers = workers
        self.timeout_s = int(timeout_s)
        self.hard_timeout_s = hard_timeout_s if hard_timeout_s else 3 * timeout_s + 1.0
        self.chunk_size = chunk_size
        self.kills = 0
        self._ctx = mp.get_context("spawn")  # no fork: the parent may hold vLLM / torch threads
        self._workers: list[_Worker] = []
        self._cache: dict[tuple[str | None, str], Verdict] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_workers(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(_Worker(self._ctx, self.timeout_s))

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for CPU accounting in benchmarks)."""
        return [w.proc.pid for w in self._workers if w.proc.pid is not None]

    def close(self) -> None:
        for w in self._workers:
            w.close()
        self._workers = []

    def grade(
        self, pairs: Sequence[tuple[str | None, str]], progress: bool = False
    ) -> list[Verdict]:
        """Verdicts for ``pairs`` in order; duplicates and cached pairs are graded once."""
        with self._lock:
            return self._grade(pairs, progress)

    def _grade(self, pairs: Sequence[tuple[str | None, str]], progress: bool) -> list[Verdict]:
        pairs = [(a if a is None else str(a), str(g)) for a, g in pairs]
        todo: list[tuple[str | None, str]] = []
        seen = set()
        for p in pairs:
            if p[0] is None or not p[0].strip():
                self._cache[p] = Verdict(False, "invalid")
            elif p not in self._cache and p not in seen:
                seen.add(p)
                todo.append(p)
        if todo:
            self._run(todo, progress)
        return [self._cache[p] for p in pairs]

    def _run(self, todo: list[tuple[str | None, str]], progress: bool) -> None:
        self._ensure_workers()
        queue = deque((i, a, g) for i, (a, g) in enumerate(todo))
        remaining = len(todo)
        bar = tqdm(total=remaining, desc="grading", disable=not progress, leave=False)
        depth = 2 * self.chunk_size  # keep each worker busy while its results travel back

        def refill(w: _Worker) -> None:
            if not w.proc.is_alive():
                return  # the watchdog below replaces it
            try:
                while queue and len(w.outstanding) < depth:
                    n = min(self.chunk_size, len(queue))
                    w.send([queue.popleft() for _ in range(n)])
            except OSError:
                pass  # died meanwhile: its chunk is in w.outstanding, requeued below

        def drain(w: _Worker) -> int:
            """Collect every result waiting in the worker's pipe; returns how many."""
            got = 0
            try:
                while w.conn.poll():
                    message = w.conn.recv()
                    w.last_progress = time.monotonic()
                    if message == _READY:
                        w.ready = True
                        continue
                    key, ok, method, secs = message
                    expect = w.outstanding.popleft()
                    assert expect[0] == key, "worker answered out of order"
                    self._cache[todo[key]] = Verdict(ok, method, secs)
                    got += 1
            except (EOFError, OSError):
                pass  # a dead worker: the watchdog below replaces it
            bar.update(got)
            return got

        for w in self._workers:
            refill(w)
        while remaining:
            conns = {w.conn: w for w in self._workers}
            ready = wait(list(conns), timeout=0.25)
            for conn in ready:
                remaining -= drain(conns[conn])
                refill(conns[conn])
            now = time.monotonic()
            for idx, w in enumerate(self._workers):
                dead = not w.proc.is_alive()
                if dead:
                    remaining -= drain(w)  # results it sent before dying are good
                if not (dead or w.overran(now, self.hard_timeout_s)):
                    continue
                if w.outstanding:
                    # The pair at the head of its queue is the one it was stuck on (or died
                    # on): string fallback for it, the rest go back into the queue.
                    key, answer, gold = w.outstanding.popleft()
                    ok = answer is not None and normalise(_wrap(answer)) == normalise(_wrap(gold))
                    self._cache[todo[key]] = Verdict(ok, "killed", now - w.last_progress)
                    remaining -= 1
                    bar.update(1)
                    queue.extendleft(reversed(w.outstanding))
                self.kills += 1
                w.kill()
                self._workers[idx] = _Worker(self._ctx, self.timeout_s)
                refill(self._workers[idx])
        bar.close()


def grade_serial(
    pairs: Iterable[tuple[str | None, str]], timeout_s: int = TIMEOUT_S
) -> list[Verdict]:
    """Grade pairs one by one in this process (the benchmark's serial baseline)."""
    return [grade_pair(a, g, timeout_s) for a, g in pairs]
