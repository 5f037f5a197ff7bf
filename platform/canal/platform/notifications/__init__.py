"""Notifications: the in-app inbox, per-kind channel preferences, and delivery by e-mail
(SMTP) and SMS (an adapter) through the job outbox. See docs/notifications.md."""
