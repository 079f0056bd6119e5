"""One policy per module; each module exposes ``POLICY`` (see ``policy.pack`` for the list)."""
