"""Block Kit rendering of answers, plain messages and approvals, split to fit Slack's message limits."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.messages.chunk import TaskUpdateChunk

from bot import wording
from bot.answer import SEVERITY_RANK, Answer, Table, ToolStatus
from bot.ports import ApprovalRecord
from bot.presentation import BACKENDS, ActionButton, Step, change_label, present, problem, query_of
from bot.render import ICON, headline, to_text

# Slack's limits (https://docs.slack.dev/reference/block-kit/blocks): 3,000 characters in a section's
# text, 50 blocks and 40,000 characters of `text` in one message, 150 in a header, 2,000 in a context element.
SECTION_LIMIT = 3_000
BLOCKS_PER_MESSAGE = 50
TEXT_LIMIT = 40_000
HEADER_LIMIT = 150
CONTEXT_LIMIT = 2_000
# Our own budgets, well inside those: Slack counts some characters (emoji) as two, and a reader
# scrolls past a wall of text; beyond MAX_MESSAGES the whole answer is attached as a file snippet.
SECTION_CHARS = 2_900
MESSAGE_CHARS = 12_000
MAX_MESSAGES = 4
FALLBACK_CHARS = 3_000



@dataclass
class SlackMessage:
    """One chat.postMessage / chat.update worth of content."""

    text: str
    blocks: list[dict[str, Any]]

    def kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


@dataclass
class Rendered:
    """What to send for one answer or message: the messages, and the whole output as a file snippet
    when it would take more than MAX_MESSAGES messages (then `messages` is a shortened first page)."""

    messages: list[SlackMessage]
    snippet: str | None = None
    snippet_name: str = "srebot-answer.txt"
    title: str = "srebot answer"
    pages: list[SlackMessage] = field(default_factory=list)  # every page, for when the upload fails


# --- text helpers ----------------------------------------------------------------------------------
def escape(text: str) -> str:
    """Slack's mrkdwn control characters, so user and tool text cannot mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def who(user: str | None) -> str:
    """A Slack user id as a mention; any other id (terminal name) as plain text."""
    if not user:
        return "someone"
    return f"<@{user}>" if re.fullmatch(r"[UW][A-Z0-9]{2,}", user) else escape(user)


def _split_long(line: str, limit: int) -> list[str]:
    """A line longer than `limit` in pieces, preferring spaces and never cutting an &amp; entity."""
    pieces = []
    while len(line) > limit:
        cut = line.rfind(" ", limit // 2, limit)
        if cut <= 0:
            cut = limit
        amp = line.rfind("&", max(0, cut - 5), cut)
        if amp > 0 and ";" not in line[amp:cut]:
            cut = amp
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


def pack(lines: list[str], limit: int = SECTION_CHARS) -> list[str]:
    """Join lines into chunks of at most `limit` characters, keeping lines whole where they fit."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        for piece in _split_long(line, limit):
            candidate = f"{current}\n{piece}" if current else piece
            if len(candidate) <= limit:
                current = candidate
            else:
                chunks.append(current)
                current = piece
    if current.strip():
        chunks.append(current)
    return chunks


# --- blocks ----------------------------------------------------------------------------------------
DIVIDER: dict[str, Any] = {"type": "divider"}


def sections(lines: list[str]) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}} for chunk in pack(lines)]


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": trim(text, HEADER_LIMIT), "emoji": True}}


def context(*texts: str) -> dict[str, Any]:
    elements = [{"type": "mrkdwn", "text": trim(t, CONTEXT_LIMIT)} for t in texts if t][:10]
    return {"type": "context", "elements": elements}


def _size(block: dict[str, Any]) -> int:
    return len(json.dumps(block, ensure_ascii=False))


def paginate(blocks: list[dict[str, Any]], first_text: str, label: str) -> list[SlackMessage]:
    """Blocks in messages of at most 50 blocks, MESSAGE_CHARS and one table (Slack refuses a second one);
    the first carries the notification text."""
    pages: list[list[dict[str, Any]]] = [[]]
    size = 0
    for block in blocks:
        if block is DIVIDER and not pages[-1]:
            continue
        n = _size(block)
        second_table = block.get("type") == "table" and any(b.get("type") == "table" for b in pages[-1])
        if pages[-1] and (len(pages[-1]) >= BLOCKS_PER_MESSAGE or size + n > MESSAGE_CHARS or second_table):
            if pages[-1][-1] is DIVIDER:
                pages[-1].pop()
            pages.append([])
            size = 0
            if block is DIVIDER:
                continue
        pages[-1].append(block)
        size += n
    total = len(pages)
    return [
        SlackMessage(text=first_text if i == 0 else f"{label} (part {i + 1}/{total})", blocks=page)
        for i, page in enumerate(pages)
    ]


def _fallback(plain: str) -> str:
    return trim(escape(plain), FALLBACK_CHARS)


def _finish(pages: list[SlackMessage], full_text: str, label: str, note: str, name: str) -> Rendered:
    """Pages as they are when few enough; else a shortened first page and the whole text as a file."""
    if len(pages) <= MAX_MESSAGES:
        return Rendered(messages=pages, pages=pages)
    first = list(pages[0].blocks)
    closing = [sections([f"_{note}_"])[0]]
    last = pages[-1].blocks[-1]
    if last.get("type") == "context":
        closing.append(last)
    budget = MESSAGE_CHARS - sum(_size(b) for b in closing)
    while first and (len(first) + len(closing) > BLOCKS_PER_MESSAGE or sum(_size(b) for b in first) > budget):
        first.pop()
    head = SlackMessage(text=pages[0].text, blocks=first + closing)
    return Rendered(messages=[head], snippet=full_text, snippet_name=name, title=label, pages=pages)


# --- answers and messages --------------------------------------------------------------------------
DETAILS_ACTION = "answer_details"
FEEDBACK_ACTION = "answer_feedback"
APPROVE, REJECT = "approval_approve", "approval_reject"


def answer_blocks(answer: Answer, now: datetime | None = None) -> list[dict[str, Any]]:
    """The short first message (it fits one phone screen): the verdict, the headline and since when, what
    could not be checked, at most three key evidence lines, the actions labelled with their change, "Show
    details", and feedback buttons. Without a request id to fetch them by, the details follow inline."""
    shown = present(answer, now)
    head = escape(shown.headline) + (f"\n_since {shown.since}_" if shown.since else "")
    blocks: list[dict[str, Any]] = [header(shown.verdict.text), *sections([head])]
    if shown.warning_text:
        blocks.append(context(f":warning: {escape(shown.warning_text)}"))
    if shown.evidence:
        blocks += sections([f"• {escape(line)}" for line in shown.evidence])
    if shown.next_step:
        blocks += sections([f"*Next:* {escape(shown.next_step)}"])
    blocks += [action_row(button) for button in shown.actions]
    if shown.has_details and answer.request_id:
        blocks.append({"type": "actions", "block_id": "answer_more", "elements": [{
            "type": "button", "action_id": DETAILS_ACTION, "text": {"type": "plain_text", "text": "Show details"},
            "value": answer.request_id,
        }]})
    blocks.append(context(escape(shown.details.footer)))
    if answer.request_id:
        blocks.append(feedback_block(answer.request_id))
    if shown.table:  # last: Slack shows a table below the rest of its message whatever its place among the blocks
        blocks += table_blocks(shown.table)
    if not answer.request_id and shown.has_details:
        blocks += [DIVIDER, *details_blocks(answer, with_header=False)]
    return blocks


def action_row(button: ActionButton) -> dict[str, Any]:
    """One proposed change as a button that says what it does; pressing it approves (after a confirmation)."""
    return {
        "type": "actions",
        "block_id": f"approval_{button.approval_id}",
        "elements": [{
            "type": "button",
            "action_id": APPROVE,
            "text": {"type": "plain_text", "text": button.label},
            "style": "primary",
            "value": button.approval_id,
            "confirm": confirm(button.full),
        }],
    }


def confirm(change: str) -> dict[str, Any]:
    return {
        "title": {"type": "plain_text", "text": "Approve this change?"},
        "text": {"type": "mrkdwn", "text": trim(escape(change), 280)
                 + "\n_Someone other than the person who asked must approve._"},
        "confirm": {"type": "plain_text", "text": "Approve"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }


def feedback_block(request_id: str) -> dict[str, Any]:
    """Thumbs up / down on an answer; the value names the turn it is stored with."""
    return {
        "type": "context_actions",
        "block_id": f"feedback_{request_id}",
        "elements": [{
            "type": "feedback_buttons",
            "action_id": FEEDBACK_ACTION,
            "positive_button": {"text": {"type": "plain_text", "text": "Helpful"},
                                "accessibility_label": "This answer was helpful", "value": f"good {request_id}"},
            "negative_button": {"text": {"type": "plain_text", "text": "Not helpful"},
                                "accessibility_label": "This answer was not helpful", "value": f"bad {request_id}"},
        }],
    }


def details_blocks(answer: Answer, *, with_header: bool = True) -> list[dict[str, Any]]:
    """Everything behind "Show details": the whole summary, every finding, queries as code with links that open
    them, what was ruled out, every recommendation, links, and each backend's time as a table."""
    shown = present(answer)
    details = shown.details
    blocks: list[dict[str, Any]] = [header(f"Details · {shown.verdict.title}")] if with_header else []
    blocks += sections([escape(line) for line in details.summary.splitlines()])
    queries = {q.text: q for q in details.queries}
    for severity in SEVERITY_RANK:
        found = [f for f in details.findings if f.severity == severity]
        if not found:
            continue
        lines = [f"*{ICON[severity]} {severity.capitalize()} ({len(found)})*"]
        for finding in found:
            lines.append(f"• *{escape(finding.title)}*  _{finding.source.replace('_', ' ')}_")
            query = query_of(finding)
            rest = (finding.evidence or "").removeprefix(query or "").removeprefix(" · ").strip()
            if rest:
                lines += [f">{escape(line)}" for line in rest.splitlines()]
        blocks += [DIVIDER, *sections(lines)]
    if queries:
        blocks += [DIVIDER, *sections(["*Queries*"])]
        for query in list(queries.values())[:MAX_QUERIES]:
            blocks.append(code(query.text))
            opener = "Grafana Explore" if query.link and "/explore?" in query.link else "Prometheus"
            if query.link:
                blocks.append(context(f"{query.source} · <{_url(query.link)}|Open in {opener}>"))
    if details.ruled_out:
        lines = ["*Ruled out*"] + [f"• *{escape(r.cause)}* — {escape(r.why)}" for r in details.ruled_out]
        blocks += [DIVIDER, *sections(lines)]
    if details.advice:
        lines = ["*Recommended*"]
        for rec in details.advice:
            note = "  _(approval requested)_" if rec.approval_id else ""
            lines.append(f"→ {escape(rec.title)}{note}")
        blocks += [DIVIDER, *sections(lines)]
    if details.links:
        lines = ["*Links*"] + [f"• <{_url(link.url)}|{escape(link.title).replace('|', '¦')}>" for link in details.links]
        blocks += sections(lines)
    if details.tools:
        blocks.append(tools_table(details.tools))
    blocks.append(context(escape(details.footer)))
    return blocks


MAX_QUERIES = 8
CODE_LIMIT = 2_900


def code(text: str) -> dict[str, Any]:
    """Text shown exactly as it is (a rich-text preformatted block: no markdown, no escaping needed)."""
    return {"type": "rich_text", "elements": [{
        "type": "rich_text_preformatted", "elements": [{"type": "text", "text": trim(text, CODE_LIMIT)}],
    }]}


# Slack's table block (https://docs.slack.dev/reference/block-kit/blocks/table-block): at most 100 rows of at most
# 20 cells, `column_settings` for at most 20 columns, and one table per message (`paginate` keeps to that; Slack
# carries the table as the message's attachment, below its other blocks); no empty cell; and a budget of 10,000
# characters across the cells of a table
TABLE_ROWS = 100
TABLE_COLUMNS = 20
CELL_CHARS = 200
TABLE_CHARS = 10_000
ANSWER_ROWS = 20  # our own budget: an answer's table shows a phone screen of rows, like a Teams card


def cell(text: str) -> dict[str, Any]:
    return {"type": "raw_text", "text": trim(text, CELL_CHARS) or "–"}


def title_cell(text: str) -> dict[str, Any]:
    """A column title: bold (a raw_text cell cannot be styled, a rich_text one can)."""
    return {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
        {"type": "text", "text": trim(text, CELL_CHARS), "style": {"bold": True}}]}]}


def table(columns: list[str], rows: list[list[str]], settings: list[dict[str, Any] | None]) -> dict[str, Any]:
    """A table block of column titles and rows, cut to Slack's limits."""
    width = min(len(columns), TABLE_COLUMNS)
    body = [[title_cell(c) for c in columns[:width]]]
    used = sum(len(c) for c in columns[:width])
    for row in rows[: TABLE_ROWS - 1]:
        cells = [cell(text) for text in row[:width]]
        used += sum(len(c["text"]) for c in cells)
        if used > TABLE_CHARS:
            break
        body.append(cells)
    return {"type": "table", "rows": body, "column_settings": settings[:width]}


def table_blocks(data: Table) -> list[dict[str, Any]]:
    """An answer's table (pods, cost by service): its title, the table, and how many rows were left out."""
    # names stay whole (a pod's name is copied into kubectl); a phone scrolls a wide table sideways
    settings = [{"align": "right"} if i in data.numeric else None for i in range(len(data.columns))]
    width = len(data.columns)
    rows = [[(row[i] if i < len(row) else "–")[:80] for i in range(width)] for row in data.rows[:ANSWER_ROWS]]
    out = [*sections([f"*{escape(data.title)}*"]), table(data.columns, rows, settings)]
    more = data.more + max(0, len(data.rows) - ANSWER_ROWS)
    if more:
        out.append(context(f"…and {more} more not shown"))
    return out


def tools_table(tools: list[ToolStatus]) -> dict[str, Any]:
    """Each backend's outcome and time as a table block."""
    rows = [[tool.name, "ok" if tool.ok else problem(tool), f"{tool.ms:.0f} ms" if tool.ms is not None else "–"]
            for tool in tools]
    return table(["Backend", "Result", "Time"], rows, [None, {"is_wrapped": True}, {"align": "right"}])


def _url(url: str) -> str:
    return url.replace(" ", "%20").replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")


def render_answer(answer: Answer) -> Rendered:
    note = (f"The whole answer ({len(answer.findings)} findings) is too long for Slack messages; "
            "it is attached below as a file.")
    return _render_answer(answer, answer_blocks(answer), headline(answer), note, "")


def render_details(answer: Answer) -> Rendered:
    """The details of an answer, posted in its thread when someone presses "Show details"."""
    note = "The details are too long for Slack messages; they are attached below as a file."
    return _render_answer(answer, details_blocks(answer), f"Details · {headline(answer)}", note, "-details")


def _render_answer(answer: Answer, answer_blocks: list[dict[str, Any]], label: str, note: str, suffix: str) -> Rendered:
    full = to_text(answer)
    pages = paginate(answer_blocks, _fallback(full), label)
    return _finish(pages, full, label, note, f"srebot-{answer.request_id or 'answer'}{suffix}.txt")


def render_mrkdwn(mrkdwn: str, plain: str | None = None, *, snippet: bool = True) -> Rendered:
    """Text that is already Slack mrkdwn (mentions allowed); `plain` is the notification / file text."""
    plain = plain if plain is not None else mrkdwn
    label = trim(plain.split("\n", 1)[0], 60) or "srebot"
    pages = paginate(sections(mrkdwn.splitlines() or [" "]), trim(mrkdwn, FALLBACK_CHARS), label)
    if not snippet:
        return Rendered(messages=pages, pages=pages)
    return _finish(pages, plain, label, "This message is too long for Slack; it is attached below as a file.",
                   "srebot-message.txt")


def render_text(text: str, *, snippet: bool = True) -> Rendered:
    """A plain message from the core (escaped, so it cannot mention anyone)."""
    return render_mrkdwn(escape(text), text, snippet=snippet)


def render(message: Answer | str) -> Rendered:
    return render_answer(message) if isinstance(message, Answer) else render_text(message)


def loading_messages(text: str) -> list[str]:
    """What the assistant thread's status rotates through while the work runs."""
    return [trim(text, 150), "Reading metrics, pods, logs and recent changes…", "Weighing the evidence…"]


def task_chunk(step: Step) -> TaskUpdateChunk:
    """A step of the work as a task in the streamed plan ("metrics: error rate 8.3%")."""
    title = BACKENDS.get(step.id, step.id)
    return TaskUpdateChunk(id=step.id, title=title[:1].upper() + title[1:], status=step.status,
                           output=trim(step.output, 200) if step.output else None)


def placeholder(text: str) -> SlackMessage:
    return SlackMessage(text=_fallback(text), blocks=[context(f":hourglass_flowing_sand: {escape(text)}")])


# --- approvals -------------------------------------------------------------------------------------
def _approval_body(approval: ApprovalRecord, title: str) -> list[dict[str, Any]]:
    what = f"*{escape(approval.kind)}* `{escape(approval.target)}`"
    if approval.params:
        what += " " + ", ".join(f"{escape(str(k))}={escape(str(v))}" for k, v in approval.params.items())
    lines = [f"{title} — {what}", *(escape(line) for line in approval.description.splitlines())]
    return sections(lines)


def approval_request(approval: ApprovalRecord) -> SlackMessage:
    """The approval message: exactly what will change, who asked, until when, and the two buttons."""
    blocks = _approval_body(approval, f":raised_hand: *{wording.APPROVAL_NEEDED}*")
    blocks.append(
        context(
            f"Requested by {who(approval.requester)} · expires {wording.clock(approval.expires_at)} · "
            f"`{approval.id}` · {wording.FOUR_EYES}"
        )
    )
    # the button says exactly what it changes; rejecting is the safe choice, so it is not styled as danger
    blocks.append({
        "type": "actions",
        "block_id": "approval",
        "elements": [
            {"type": "button", "action_id": APPROVE, "text": {"type": "plain_text", "text": change_label(approval.description)},
             "style": "primary", "value": approval.id, "confirm": confirm(approval.description)},
            {"type": "button", "action_id": REJECT, "text": {"type": "plain_text", "text": "Reject (change nothing)"},
             "value": approval.id},
        ],
    })
    return SlackMessage(text=_fallback(f"{wording.APPROVAL_NEEDED}: {approval.description}"), blocks=blocks)


def approval_status_line(approval: ApprovalRecord) -> str:
    """"Approved by <@U2> 10:51 UTC · rollout restarted", and the like for every status."""
    return wording.approval_status(approval, person=lambda user: who(user) + approval.via_note, text=escape)


def approval_decided(approval: ApprovalRecord) -> SlackMessage:
    """The approval message after a decision: buttons gone, the outcome said."""
    line = approval_status_line(approval)
    blocks = _approval_body(approval, "*Approval*")
    blocks.append(context(f"{line} · `{approval.id}`"))
    # the status line is mrkdwn already (a mention of who decided): escape only the raw description
    return SlackMessage(text=trim(f"{escape(approval.description)}: {line}", FALLBACK_CHARS), blocks=blocks)


def approval_outcome(approval: ApprovalRecord) -> str | None:
    """The line posted in the thread once an approval is final; None while it is not."""
    return wording.approval_outcome(
        approval,
        action=f"{escape(approval.kind)} `{escape(approval.target)}`",
        person=lambda user: who(user) + approval.via_note,
        text=escape,
    )
