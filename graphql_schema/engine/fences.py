"""The fence around the fast paths: they run only at the library versions they were built on.

The plain-leaf shortcut (``execution.py``), the query and mutation plans (``plans.py``), the
plans' direct resolver calls (``resolvers.py``), the JSON lane (``json_posts.py``) and the
front door that skips Starlette's own layers for ``/graphql`` (``app.main.Gateway``) reach
into private parts of Strawberry, graphql-core and Starlette (the executor's hooks, the
resolver wrapper's ``_is_default`` mark and what it does per call, the HTTP view's stream
transports and error hook). Those may change in any release, so the fast paths switch
themselves off, with one log line, when the installed versions are not the ones pinned in
``pyproject.toml`` (a test keeps ``PINNED`` equal to those pins);
``CREDITGATE_QUERY_PLANS=false`` turns them off as well. Off, every operation takes
Strawberry's and graphql-core's stock path (and Starlette's).
"""

from __future__ import annotations

from collections.abc import Mapping

from app.pins import Installed, fence_open, installed_version

PINNED: Mapping[str, str] = {"strawberry-graphql": "0.341.2", "graphql-core": "3.3.2"}


def fast_paths_enabled(wanted: bool, installed: Installed = installed_version) -> bool:
    """Whether the fast paths may run: ``wanted`` (the setting) and every pin installed."""
    return fence_open("fast paths", "CREDITGATE_QUERY_PLANS", wanted, PINNED, installed)
