"""The chat-independent core: commands, permissions, approvals, audit and settings."""
