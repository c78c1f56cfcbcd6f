"""Tests of the delivery stage: messages, hostile text in them, pacing, the outbox."""
