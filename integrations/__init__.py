"""Platform adapters: translate Slack and Teams to bot Requests and Answers back; no diagnosis here."""
