"""Fast paths that lean on a library's private parts run only at the versions they were built
on: one check for every such fence (the GraphQL engine's, the driver lane's)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version

logger = logging.getLogger("creditgate")

Installed = Callable[[str], str | None]


def installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def fence_open(
    what: str, setting: str, wanted: bool, pinned: Mapping[str, str], installed: Installed
) -> bool:
    """Whether ``what`` may run: ``wanted`` (its ``setting``) and every pin installed; says
    why not in one log line."""
    if not wanted:
        logger.info("%s off: %s=false", what, setting)
        return False
    mismatched = {name: got for name, pin in pinned.items() if (got := installed(name)) != pin}
    if mismatched:
        logger.warning(
            "%s off: %s installed, built for %s",
            what,
            ", ".join(f"{name} {got}" for name, got in mismatched.items()),
            ", ".join(f"{name} {pinned[name]}" for name in mismatched),
        )
        return False
    return True
