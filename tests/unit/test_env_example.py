"""``.env.example`` documents every setting, with the defaults the code really has."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

EXAMPLE = Path(__file__).parents[2] / ".env.example"


def test_env_example_lists_every_setting() -> None:
    listed = set(re.findall(r"^CREDITGATE_([A-Z_]+)=", EXAMPLE.read_text(), re.MULTILINE))

    assert listed == {name.upper() for name in Settings.model_fields}


def test_env_example_values_are_the_defaults() -> None:
    from_example = Settings(_env_file=EXAMPLE)
    defaults = Settings(_env_file=None)

    assert from_example == defaults
