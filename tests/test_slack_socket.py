"""Socket Mode end to end: apps.connections.open, a websocket envelope, its ack, the answer via the Web API."""

from __future__ import annotations

from integrations.slack import start_socket_mode
from tests.fakes.slack import SlackBot, SlackFake, dropped, in_thread


async def test_socket_mode_event_is_acked_and_answered(slack: SlackFake, db_file: str) -> None:
    async with SlackBot(slack, db_file, env={"SLACK_APP_TOKEN": slack.app_token}) as bot:
        handler = await start_socket_mode(bot.app, bot.runtime)
        try:
            await slack.wait_for_socket()
            opened = slack.calls_to("apps.connections.open")
            assert opened and opened[0].token == slack.app_token
            mention = slack.app_mention("<@UBOT> diagnose checkout")
            payload = slack.event_payload(mention)
            envelope = await slack.send_envelope(payload)
            ack = await slack.wait_for_ack(envelope)
            assert ack["envelope_id"] == envelope
            placeholder = await slack.wait_for("chat.postMessage", in_thread(mention["ts"]))
            assert placeholder.token == slack.bot_token
            await slack.wait_for("chat.update", lambda c: c.args["ts"] == placeholder.response["ts"]
                                 and c.args["blocks"][0]["type"] == "header")
            # a redelivery (retry_attempt > 0) of a handled event is acked and dropped by the database claim
            await bot.idle()
            duplicates = dropped("duplicate")
            again = await slack.send_envelope(payload, retry_attempt=1)
            await slack.wait_for_ack(again)
            await bot.idle()
            assert dropped("duplicate") - duplicates >= 1
            assert len(slack.calls_to("chat.postMessage", in_thread(mention["ts"]))) == 1
            # a slash command over the socket: the ack carries the ephemeral response
            command = {"command": "/sre", "text": "help", "team_id": slack.team_id, "channel_id": "C0INCIDENT",
                       "user_id": "U0ALICE", "response_url": f"{slack.url}response/x", "trigger_id": "1.2"}
            envelope = await slack.send_envelope(command, type="slash_commands", accepts_response_payload=True)
            ack = await slack.wait_for_ack(envelope)
            assert ack["payload"]["response_type"] == "ephemeral" and "/sre" in ack["payload"]["text"]
            await bot.idle()
        finally:
            await handler.close_async()
