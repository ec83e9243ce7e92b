"""The paper's prompt templates, rendered through a model's own chat template.

PROTOCOL section 3 (training) and section 4 (evaluation):

* student (training): "Problem: {problem}\\n\\n" + REASON_LINE, enable_thinking=False;
* teacher (training): problem, reference solution between begin/end markers, an instruction
  to understand it and derive the same answer in its own words, then REASON_LINE;
  enable_thinking=True;
* evaluation: "{problem}\\n\\n" + REASON_LINE (no "Problem:" prefix), enable_thinking=True;
* diagnostic teacher: like the teacher, but the privileged block carries only the final
  answer (Sec. 3.2, step B).

Chat templates that ignore ``enable_thinking`` (DeepSeek-R1-Distill, Olmo-3-Think; in the
toy world the "olmo3" family) leave the rendered prompt ending in an open think tag; for
the student template the think block is then closed ("think-closure").

The exact wording of the teacher instruction and the markers is **this project's choice**:
the paper describes them but the wording we hold is not verbatim.
"""

from __future__ import annotations

from typing import Any, Protocol

REASON_LINE = "Please reason step by step, and put your final answer within \\boxed{}."
"""The instruction line shared by every template."""

SOLUTION_BEGIN = "=== Reference Solution Begin ==="
SOLUTION_END = "=== Reference Solution End ==="
ANSWER_BEGIN = "=== Reference Answer Begin ==="
ANSWER_END = "=== Reference Answer End ==="
TEACHER_INSTRUCTION = (
    "The reference solution above is correct. Understand it, then solve the problem "
    "yourself and derive the same final answer in your own words."
)
ANSWER_INSTRUCTION = (
    "The reference answer above is correct. Solve the problem yourself and derive the "
    "same final answer in your own words."
)

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class ChatTokenizer(Protocol):
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def student_text(problem: str) -> str:
    """User message of the student (training) template."""
    return f"Problem: {problem}\n\n{REASON_LINE}"


def teacher_text(problem: str, solution: str) -> str:
    """User message of the teacher (training) template: problem + reference solution."""
    return (
        f"Problem: {problem}\n\n{SOLUTION_BEGIN}\n{solution}\n{SOLUTION_END}\n\n"
        f"{TEACHER_INSTRUCTION}\n\n{REASON_LINE}"
    )


def answer_text(problem: str, answer: str) -> str:
    """User message of the diagnostic teacher: problem + final answer only."""
    return (
        f"Problem: {problem}\n\n{ANSWER_BEGIN}\n{answer}\n{ANSWER_END}\n\n"
        f"{ANSWER_INSTRUCTION}\n\n{REASON_LINE}"
    )


def eval_text(problem: str) -> str:
    """User message of the evaluation template (no "Problem:" prefix, on purpose)."""
    return f"{problem}\n\n{REASON_LINE}"


def render(tokenizer: ChatTokenizer, user_text: str, enable_thinking: bool) -> str:
    """Render one user turn with the generation prompt, as a string.

    When thinking is disabled but the template ignored the flag and left an open think
    tag at the end, close the think block (think-closure, PROTOCOL section 3).
    """
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_text}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=enable_thinking,
    )
    if not enable_thinking and text.rstrip().endswith(THINK_OPEN):
        text = text.rstrip() + "\n\n" + THINK_CLOSE + "\n\n"
    return text


def student_prompt(tokenizer: ChatTokenizer, problem: str) -> str:
    """Rendered student training prompt (enable_thinking=False, think-closure applied)."""
    return render(tokenizer, student_text(problem), enable_thinking=False)


def teacher_prompt(tokenizer: ChatTokenizer, problem: str, solution: str) -> str:
    """Rendered teacher training prompt (enable_thinking=True)."""
    return render(tokenizer, teacher_text(problem, solution), enable_thinking=True)


def answer_prompt(tokenizer: ChatTokenizer, problem: str, answer: str) -> str:
    """Rendered diagnostic teacher prompt carrying only the final answer."""
    return render(tokenizer, answer_text(problem, answer), enable_thinking=True)


def eval_prompt(tokenizer: ChatTokenizer, problem: str) -> str:
    """Rendered evaluation prompt (enable_thinking=True)."""
    return render(tokenizer, eval_text(problem), enable_thinking=True)
