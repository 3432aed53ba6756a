"""Plain-text rendering of an Answer: the terminal's output and the notification fallback of chat platforms."""

from __future__ import annotations

from bot.answer import Answer

ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
STATUS_ICON = {"completed": "✅", "failed": "❌", "cancelled": "⏹"}


def headline(answer: Answer) -> str:
    subject = f" {answer.namespace}/{answer.service}" if answer.service and answer.namespace else (
        f" {answer.service}" if answer.service else ""
    )
    return f"{STATUS_ICON.get(answer.status, '')} {answer.intent}{subject}".strip()


def tools_line(answer: Answer) -> str:
    parts = []
    for tool in answer.tools:
        if tool.ok:
            parts.append(f"{tool.name} ✓ {tool.ms:.0f} ms" if tool.ms is not None else f"{tool.name} ✓")
        else:
            parts.append(f"{tool.name} ✗ {tool.error or 'failed'}")
    return " · ".join(parts)


def to_text(answer: Answer) -> str:
    lines = [headline(answer), "", answer.summary]
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
    footer = tools_line(answer)
    if footer:
        lines += ["", footer]
    if answer.status != "completed" or answer.confidence:
        lines.append(f"confidence {answer.confidence:.0%} · {answer.elapsed_ms:.0f} ms · session {answer.session_id}")
    return "\n".join(lines).rstrip()
