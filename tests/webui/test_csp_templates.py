"""Templates obey our Content-Security-Policy (no inline styles or scripts), which the browser
would otherwise block with a console error."""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "webui" / "templates"


def test_no_template_has_inline_styles_scripts_or_event_handlers() -> None:
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for pattern in (r'\sstyle="', r"<script>", r"<script\s+(?![^>]*\bsrc=)", r"\son\w+="):
            for match in re.finditer(pattern, text):
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{path.relative_to(TEMPLATES)}:{line}: {pattern}")
    assert offenders == []
