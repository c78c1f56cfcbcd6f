"""Delivery: what messages say (templates, formats), when each target gets them (pacing),
sending through Apprise, and the outbox that drives it."""
