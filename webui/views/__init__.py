"""The web UI's blueprints, one per area."""
