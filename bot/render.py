"""Plain-text rendering of an Answer: the terminal's output and the notification fallback of chat platforms."""

from __future__ import annotations

from bot.answer import Answer
from bot.presentation import present, tools_line

ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


def headline(answer: Answer) -> str:
    """The verdict line: '🔴 Failing · shop/checkout', never a success mark for a request that merely finished."""
    return present(answer).verdict.text


def to_text(answer: Answer) -> str:
    shown = present(answer)
    lines = [shown.verdict.text, "", shown.headline]
    if shown.since:
        lines.append(f"Since {shown.since}.")
    if shown.warning_text:
        lines.append(shown.warning_text.replace("`", ""))
    lines += ["", answer.summary] if answer.summary != shown.headline else []
    ranked = answer.ranked().findings
    if ranked:
        lines += ["", "Findings:"]
        for finding in ranked:
            lines.append(f"  {ICON[finding.severity]} [{finding.source}] {finding.title}")
            if finding.evidence:
                lines.append(f"      {finding.evidence}")
    if answer.ruled_out:
        lines += ["", "Ruled out:"]
        lines += [f"  – {item.cause}: {item.why}" for item in answer.ruled_out]
    if answer.recommendations:
        lines += ["", "Recommendations:"]
        for rec in answer.recommendations:
            suffix = f"  (approval {rec.approval_id})" if rec.approval_id else ""
            lines.append(f"  → {rec.title}{suffix}")
    if answer.links:
        lines += ["", "Links:"] + [f"  {link.title}: {link.url}" for link in answer.links]
    footer = tools_line(answer.tools)
    if footer:
        lines += ["", footer]
    if answer.status != "completed" or answer.confidence:
        lines.append(f"confidence {answer.confidence:.0%} · {answer.elapsed_ms:.0f} ms · session {answer.session_id}")
    return "\n".join(lines).rstrip()
