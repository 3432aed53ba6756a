"""Adaptive Cards for Teams (answers, approvals, plain text), split to stay under Teams' message size limit."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.answer import Answer, Table
from bot import wording
from bot.ports import ApprovalRecord
from bot.presentation import present, tools_line
from bot.render import ICON

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"  # 1.5 is not rendered everywhere (older mobile clients); 1.4 has all we use
# Teams rejects a bot message over ~40 KB (413 MessageSizeTooBig), measured as the whole payload
# encoded as UTF-16. A card gets that minus room for the activity envelope around it.
MAX_MESSAGE_BYTES = 40_000
ENVELOPE_BYTES = 4_000
CARD_BUDGET = MAX_MESSAGE_BYTES - ENVELOPE_BYTES
MAX_PARTS = 10  # one answer is never spread over more messages than this; the last one says what is left
_NOTE_RESERVE = 600  # room kept in every part for its "… N more findings" note and part header

SEVERITY_TITLE = {"critical": "Critical", "warning": "Warning", "info": "Info"}
SEVERITY_COLOR = {"critical": "Attention", "warning": "Warning", "info": "Accent"}


def payload_size(value: Any) -> int:
    """Bytes of `value` as JSON in UTF-16, the way Teams counts a message."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-16-le"))


def attachment(card: dict[str, Any]) -> dict[str, Any]:
    return {"contentType": CARD_CONTENT_TYPE, "content": card}


def text_block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def card(body: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    if actions:
        content["actions"] = actions
    return content


# --- answers -----------------------------------------------------------------------------------
@dataclass
class _Item:
    element: dict[str, Any]
    finding: bool = False  # counted in "… N more findings"


# a verdict's container style (Adaptive Cards have no free colours: these are the host's palette)
CONTAINER_STYLE = {"failing": "attention", "degraded": "warning", "healthy": "good", "inconclusive": "emphasis",
                   "failed": "attention", "refused": "emphasis", "cancelled": "emphasis", "answer": "accent"}
DETAILS_ID = "details"
CHART_MIME = "data:image/png;base64,"
# the chart travels inside the card: small and with a quantised palette it costs about 7 KB of base64
CHART_WIDTH, CHART_HEIGHT, CHART_COLOURS = 560, 200, 32


def plain(text: str, **style: Any) -> dict[str, Any]:
    """Text shown exactly as it is: a TextRun is never read as markdown (so `pod=~"api-.*"` keeps its `*`)."""
    run_style = {k: v for k, v in style.items() if k in ("weight", "color", "isSubtle", "size", "fontType", "italic")}
    block_style = {k: v for k, v in style.items() if k not in run_style}
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text, **run_style}], **block_style}


def runs(*parts: tuple[str, dict[str, Any]], **block_style: Any) -> dict[str, Any]:
    """Several differently styled plain texts in one line."""
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": t, **s} for t, s in parts if t],
            **block_style}


def _lines(text: str) -> list[dict[str, Any]]:
    """A paragraph per block; lines inside a paragraph stay tight (Adaptive Card markdown drops single newlines)."""
    blocks: list[dict[str, Any]] = []
    for paragraph in text.strip().split("\n\n"):
        for index, line in enumerate(l for l in paragraph.splitlines() if l.strip()):
            blocks.append(text_block(line, spacing="None" if index else "Small"))
    return blocks


def _plain_lines(text: str) -> list[dict[str, Any]]:
    return [plain(line, spacing="Small") for line in text.strip().splitlines() if line.strip()]


def _section(title: str, **style: Any) -> dict[str, Any]:
    return text_block(title, weight="Bolder", spacing="Medium", **style)


def chart_image(png: bytes, alt: str) -> dict[str, Any]:
    """The chart inline as a data URI: Teams shows it without the bot hosting anything, at the cost of the
    card's size (a quantised 560×200 PNG is about 5 KB, 7 KB as base64)."""
    return {"type": "Image", "url": CHART_MIME + base64.b64encode(png).decode(), "altText": alt, "size": "Stretch",
            "spacing": "Medium"}


def summary_items(answer: Answer, chart_png: bytes | None = None) -> list[dict[str, Any]]:
    """What a person reads first: the verdict in its colour, the headline and since when, what could not be
    checked, the key evidence, the proposed changes, and the chart."""
    shown = present(answer)
    key = shown.verdict.key
    body: list[dict[str, Any]] = [{
        "type": "Container", "style": CONTAINER_STYLE[key], "bleed": True,
        "items": [text_block(shown.verdict.text, weight="Bolder", size="Large", color=shown.verdict.tone.teams)],
    }]
    body.append(plain(shown.headline, spacing="Medium"))
    if shown.since:
        body.append(plain(f"since {shown.since}", isSubtle=True, spacing="None"))
    if shown.warning_text:
        body.append(plain(shown.warning_text.replace("`", ""), color="Warning", spacing="Small"))
    for line, finding in zip(shown.evidence, answer.ranked().findings, strict=False):
        body.append(runs((f"{finding.source}  ", {"isSubtle": True, "size": "Small"}), (line, {"weight": "Bolder"}),
                         spacing="Small"))
    if shown.table:
        body += table_items(shown.table)
    if shown.next_step:
        body.append(runs(("Next: ", {"weight": "Bolder"}), (shown.next_step, {}), spacing="Medium"))
    for button in shown.actions:
        body.append(runs(("Proposed: ", {"weight": "Bolder"}), (button.full, {}),
                         (" — approve or reject it on the approval card", {"isSubtle": True}), spacing="Small"))
    if chart_png is not None and shown.chart_title:
        body.append(chart_image(chart_png, f"{shown.chart_title} over the window"))
    return body


TABLE_ROWS = 20  # rows of a grid in a card: a phone screen's worth
CELL_CHARS = 80


def table_items(table: Table) -> list[dict[str, Any]]:
    """An answer's table as one ColumnSet with a column per table column, a one-line TextBlock per cell (the Table
    element needs card schema 1.5, which these 1.4 cards do not use; a ColumnSet per row would cost about 2 KB a
    row). Cells never wrap, so every row has one line's height and the rows line up across the columns; the column
    weights come from the longest text of each column, titles are bold, numbers right-aligned."""
    rows = [[(row[i] if i < len(row) else "–")[:CELL_CHARS] for i in range(len(table.columns))]
            for row in table.rows[:TABLE_ROWS]]
    columns = []
    for index, title in enumerate(table.columns):
        cells = [title, *(row[index] for row in rows)]
        align = {"horizontalAlignment": "Right"} if index in table.numeric else {}
        items = [{"type": "TextBlock", "text": text, "size": "Small", "spacing": "None", **align,
                  **({"weight": "Bolder"} if line == 0 else {})} for line, text in enumerate(cells)]
        columns.append({"type": "Column", "width": min(max(max(map(len, cells)), 3), 30), "items": items})
    items = [text_block(table.title, weight="Bolder", spacing="Medium"),
             {"type": "ColumnSet", "columns": columns, "spacing": "Small"}]
    more = table.more + max(0, len(table.rows) - TABLE_ROWS)
    if more:
        items.append(plain(f"…and {more} more not shown", isSubtle=True, size="Small", spacing="Small"))
    return items


def details_items(answer: Answer) -> list[_Item]:
    """Everything behind "Show details": the whole summary, every finding with its query in monospace (and a
    link that opens it), what was ruled out, every recommendation, links, each backend's outcome."""
    shown = present(answer)
    details = shown.details
    items = [_Item(b) for b in _plain_lines(details.summary)]
    for severity in ("critical", "warning", "info"):
        group = [f for f in details.findings if f.severity == severity]
        if not group:
            continue
        items.append(_Item(_section(f"{ICON[severity]} {SEVERITY_TITLE[severity]} ({len(group)})",
                                    color=SEVERITY_COLOR[severity])))
        for finding in group:
            parts = [runs((finding.title, {"weight": "Bolder"}), (f" · {finding.source}", {"isSubtle": True}),
                          spacing="Small")]
            if finding.evidence:
                parts.append(plain(finding.evidence, fontType="Monospace", size="Small", isSubtle=True,
                                   spacing="None"))
            if finding.link:
                opener = "Grafana Explore" if "/explore?" in finding.link else "Prometheus"
                parts.append(text_block(f"[Open in {opener}]({finding.link})", size="Small", spacing="None"))
            items.append(_Item({"type": "Container", "items": parts}, finding=True))
    if details.ruled_out:
        items.append(_Item(_section("Ruled out")))
        items += [_Item(runs((f"– {r.cause}: ", {"weight": "Bolder"}), (r.why, {}), spacing="None"))
                  for r in details.ruled_out]
    if details.advice:
        items.append(_Item(_section("Recommendations")))
        for rec in details.advice:
            suffix = f" (approval {rec.approval_id}, see the approval card)" if rec.approval_id else ""
            items.append(_Item(plain(f"→ {rec.title}{suffix}", spacing="Small")))
    if details.links:
        items.append(_Item(_section("Links")))
        items += [_Item(text_block(f"[{link.title}]({link.url})", spacing="None")) for link in details.links]
    tools = tools_line(details.tools)
    if tools:
        items.append(_Item(plain(tools, size="Small", isSubtle=True, spacing="Medium")))
    return items


def _footer(answer: Answer) -> dict[str, Any]:
    return plain(f"{present(answer).details.footer} · session {answer.session_id}", size="Small", isSubtle=True,
                 spacing="Medium")


def answer_cards(answer: Answer, chart_png: bytes | None = None, budget: int = CARD_BUDGET) -> list[dict[str, Any]]:
    """The answer as one card: the short part, the chart, and the details behind "Show details"
    (Action.ToggleVisibility). When that is too big for one Teams message, the chart goes in a card of its own;
    when even that is not enough, the details follow as cards of their own; nothing is dropped silently (see
    split_cards)."""
    short = summary_items(answer, chart_png)
    details = details_items(answer)
    footer = _footer(answer)
    if not details:
        return [card([*short, footer])]
    hidden = {"type": "Container", "id": DETAILS_ID, "isVisible": False, "items": [i.element for i in details]}
    toggle = {"type": "Action.ToggleVisibility", "title": "Show details", "targetElements": [DETAILS_ID]}
    whole = card([*short, footer, hidden], [toggle])
    if payload_size(whole) <= budget:
        return [whole]
    if chart_png is not None:
        # the chart costs as much as a page of details: it goes in a message of its own, so the details can stay
        # behind the toggle instead of following as a wall of text
        bare = card([*summary_items(answer), footer, hidden], [toggle])
        alone = card([chart_image(chart_png, f"{present(answer).chart_title} over the window")])
        if payload_size(bare) <= budget and payload_size(alone) <= budget:
            return [bare, alone]
    if payload_size(card(short)) > budget // 2:  # a chart that crowds out the rest is left out
        short = summary_items(answer)
    note = plain("The details follow in the next message.", isSubtle=True, spacing="Small")
    rest = split_cards(f"Details · {present(answer).verdict.title}", [*details, _Item(footer)], budget=budget,
                       max_parts=MAX_PARTS - 1)
    return [card([*short, note]), *rest]


def text_cards(text: str, title: str | None = None, budget: int = CARD_BUDGET) -> list[dict[str, Any]]:
    """Plain text as card(s); used when a text is too long for one message."""
    return split_cards(title, [_Item(b) for b in _lines(text)], budget=budget)


def split_cards(
    title: str | None, items: list[_Item], *, budget: int = CARD_BUDGET, color: str = "Default",
    max_parts: int = MAX_PARTS,
) -> list[dict[str, Any]]:
    limit = budget - _NOTE_RESERVE
    fitted = [piece for item in items for piece in _fit(item, limit // 2)]
    parts: list[list[_Item]] = [[]]
    used = payload_size(card([]))
    for item in fitted:
        size = payload_size(item.element) + 2
        if parts[-1] and used + size > limit:
            parts.append([])
            used = payload_size(card([]))
        parts[-1].append(item)
        used += size
    shown, hidden = parts[:max_parts], parts[max_parts:]
    hidden_findings = sum(i.finding for part in hidden for i in part)
    hidden_items = sum(len(part) for part in hidden)
    cards = []
    for index, part in enumerate(shown):
        body: list[dict[str, Any]] = []
        if title:
            suffix = f" (part {index + 1} of {len(shown)})" if len(shown) > 1 else ""
            body.append(text_block(title + suffix, weight="Bolder", size="Medium", color=color))
        body += [i.element for i in part]
        if index + 1 < len(shown):
            later = sum(i.finding for p in shown[index + 1:] for i in p) + hidden_findings
            note = f"… {_plural(later, 'finding')} in the next message" if later else "… continued in the next message"
            body.append(text_block(note, isSubtle=True, spacing="Medium"))
        elif hidden:
            body.append(text_block(
                f"… {_more(hidden_findings, hidden_items - hidden_findings)} not shown: the answer is longer "
                f"than {MAX_PARTS} Teams messages. Ask a narrower question to see them.",
                color="Warning", spacing="Medium"))
        cards.append(card(body))
    return cards


def _plural(count: int, word: str) -> str:
    return f"{count} more {word}{'' if count == 1 else 's'}"


def _more(findings: int, others: int) -> str:
    if not findings:
        return "the rest of the answer is"
    verb = " and further details are" if others else (" is" if findings == 1 else " are")
    return _plural(findings, "finding") + verb


def _fit(item: _Item, limit: int) -> Iterable[_Item]:
    """An element no bigger than `limit`: containers are opened, long texts cut into consecutive pieces."""
    if payload_size(item.element) <= limit:
        yield item
        return
    element = item.element
    if element.get("type") == "Container":
        for index, inner in enumerate(element["items"]):
            yield from _fit(_Item(inner, finding=item.finding and index == 0), limit)
        return
    if element.get("type") == "RichTextBlock":  # its longest run is cut, the others stay with the first piece
        inlines = element["inlines"]
        longest = max(range(len(inlines)), key=lambda i: len(inlines[i].get("text", "")))

        def rebuild(piece: str, first: bool) -> dict[str, Any]:
            kept = [dict(r, text=piece) if i == longest else r for i, r in enumerate(inlines) if first or i == longest]
            return {**element, "inlines": kept}

        text = str(inlines[longest].get("text", ""))
    else:
        def rebuild(piece: str, first: bool) -> dict[str, Any]:
            return {**element, "text": piece}

        text = str(element.get("text", ""))
    # 4 bytes a character covers UTF-16 surrogate pairs and JSON escapes like \" and \n
    room = max((limit - payload_size(rebuild("", True))) // 4, 100)
    first = True
    while text:
        piece = text[:room]
        if len(text) > room:
            cut = max(piece.rfind("\n"), piece.rfind(" "))
            piece = piece[:cut + 1] if cut > room // 2 else piece
        text = text[len(piece):]
        yield _Item(rebuild(piece, first), finding=item.finding and first)
        first = False


# --- approvals ---------------------------------------------------------------------------------
# Approvals are Universal Actions (Action.Execute, card 1.4): everyone sees the request and its status;
# the eligible approvers listed in `refresh.userIds` get their own view with Approve / Reject (each behind
# a confirmation) when the card is shown to them; anyone can ask for their view with "Review".
REFRESH_VERB = "srebot.approval.refresh"
DECIDE_VERB = "srebot.approval.decide"
MAX_REFRESH_USERS = 60  # Teams refreshes a card automatically for at most 60 listed users


@dataclass(frozen=True)
class ApprovalView:
    """What one person may do with a pending approval (their user-specific card)."""

    can_approve: bool = False
    can_reject: bool = False
    note: str | None = None  # told to this person only: why they cannot, or what just happened


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "?"


def _name(user: str | None, names: dict[str, str]) -> str:
    return names.get(user or "", user or "?")


def approval_outcome(approval: ApprovalRecord, names: dict[str, str] | None = None) -> str | None:
    """The line posted in the conversation when an approval reaches a final state (None before)."""
    return wording.approval_outcome(
        approval, action=f"{approval.kind} {approval.target} ({approval.id})", person=lambda u: _name(u, names or {})
    )


def _execute(title: str, verb: str, approval_id: str, decision: str | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, str] = {"srebot": "approval", "approval_id": approval_id}
    if decision:
        data["decision"] = decision
    return {"type": "Action.Execute", "title": title, "verb": verb, "data": data, **extra}


def _confirm(approval: ApprovalRecord, decision: str) -> dict[str, Any]:
    """Approve / Reject open a confirmation inside the card; only its button sends the decision."""
    title, style, question = {
        "approve": ("Approve", "positive", f"Approve **{approval.kind} {approval.target}**? It runs at once."),
        "reject": ("Reject", "destructive", f"Reject **{approval.kind} {approval.target}**? Nothing will change."),
    }[decision]
    return {
        "type": "Action.ShowCard", "title": title, "style": style,
        "card": {"type": "AdaptiveCard", "version": CARD_VERSION, "body": [text_block(question)],
                 "actions": [_execute(f"Yes, {title.lower()}", DECIDE_VERB, approval.id, decision, style=style)]},
    }


def approval_card(
    approval: ApprovalRecord,
    *,
    names: dict[str, str] | None = None,
    approver_ids: list[str] | tuple[str, ...] = (),
    view: ApprovalView | None = None,
) -> dict[str, Any]:
    """The approval card: without `view` the one everyone sees (request and status, refreshed for the
    Teams users `approver_ids`); with `view` the card of one person, with the buttons they may use."""
    names = names or {}
    pending = approval.status == "pending"
    facts = [
        {"title": "Action", "value": f"{approval.kind} {approval.target}"},
        {"title": "Requested by", "value": _name(approval.requester, names)},
        {"title": "Expires", "value": _when(approval.expires_at)},
        {"title": "Approval", "value": approval.id},
    ]
    if approval.params:
        facts.insert(1, {"title": "Parameters", "value": ", ".join(f"{k}={v}" for k, v in approval.params.items())})
    body = [
        text_block(wording.APPROVAL_NEEDED if pending else "Approval", weight="Bolder", size="Medium"),
        text_block(approval.description),
        {"type": "FactSet", "facts": facts},
        text_block(wording.approval_status(approval, person=lambda u: _name(u, names)),
                   weight="Bolder" if not pending else "Default",
                   isSubtle=pending, spacing="Medium"),
    ]
    if view is not None and view.note:
        body.append(text_block(view.note, color="Warning", spacing="Small"))
    actions: list[dict[str, Any]] = []
    if pending and view is None:
        actions.append(_execute("Review", REFRESH_VERB, approval.id))
    elif pending and view is not None:
        actions += [_confirm(approval, d) for d, ok in (("approve", view.can_approve), ("reject", view.can_reject)) if ok]
    content = card(body, actions or None)
    if pending:
        content["refresh"] = {"action": _execute("Refresh", REFRESH_VERB, approval.id),
                              "userIds": list(approver_ids)[:MAX_REFRESH_USERS]}
    return content
