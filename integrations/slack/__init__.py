"""Slack for srebot (DESIGN 3.5): a Bolt AsyncApp over HTTP (`mount_slack`) and Socket Mode (`start_socket_mode`).

Modules:
- `app`: wires Bolt to POST /slack/events and to Socket Mode, verifies, counts and acks before any work.
- `intake`: turns acknowledged events, `/sre` commands (parsed by `bot.commands`) and button clicks into requests and decisions.
- `port`: delivers into threads (the ReplyPort of a request, the Notifier of the process).
- `blocks`: renders answers, messages and approvals as Block Kit within Slack's limits.

Choices worth knowing:
- Every request is acknowledged before any database, engine or backend work: listeners only classify
  in memory and hand off to a task; event dedupe (`claim_event`) runs in that task, after the ack.
- Redeliveries with `X-Slack-Retry-Num` > 0 (Socket Mode: `retry_attempt`) are acked and go through
  the same database claim as first deliveries: a repeated `event_id` and the second copy of a channel
  mention (app_mention + message, one `channel`+`ts`, claimed as `msg:{channel}:{ts}`) are dropped,
  while a retry whose first delivery never arrived is handled (it is the only copy).
- `/sre diagnose checkout` answers "On it…" privately at once, posts "@user asked: …" in the channel
  and runs the request in that message's thread. `/sre status` is answered privately
  (chat.postEphemeral). `/sre cancel` cancels the newest request that `/sre` started in the same
  channel and that this process still has in flight. Slack sends no thread with a slash command and
  only the process that posted "@user asked: …" knows that thread came from `/sre` (nothing in the
  database says so), so on another replica `/sre cancel` finds nothing and its private reply says to
  type `cancel` in the request's thread instead. That message works on any replica: the dispatcher
  cancels a local request at once, and flags one running elsewhere in the database
  (`turns.cancel_requested_at`) for its replica to cancel on its next heartbeat.
"""

from integrations.slack.app import (
    SLACK,
    SlackIntegration,
    mount_slack,
    start_socket_mode,
)

__all__ = ["SLACK", "SlackIntegration", "mount_slack", "start_socket_mode"]
