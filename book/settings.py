"""Where the course lives, for the site's launch links: the one place to set it.

``REPOSITORY`` is the GitHub ``owner/name`` the launch links open (the README's Binder badge says
OWNER/REPO for the same thing). Set it here once, or per build from the environment:
``make site REPO=owner/name`` (that is ``SITE_REPOSITORY=owner/name``). The other settings have
sensible defaults and the same kind of override.
"""
from __future__ import annotations

import os
from urllib.parse import urlencode

PLACEHOLDER = "OWNER/REPO"
REPOSITORY = os.environ.get("SITE_REPOSITORY") or PLACEHOLDER
#: What Binder and the repository links open: HEAD is the default branch, as in the README's badge.
BRANCH = os.environ.get("SITE_BRANCH") or "HEAD"
BINDERHUB_URL = (os.environ.get("SITE_BINDERHUB_URL") or "https://mybinder.org").rstrip("/")
#: A JupyterHub with nbgitpuller (e.g. https://hub.example.edu); empty: no JupyterHub links.
JUPYTERHUB_URL = (os.environ.get("SITE_JUPYTERHUB_URL") or "").rstrip("/")
#: The JupyterLab view the links open: the same as ``make lab`` and the README's badge.
UI = "lab/tree"


def repository_url() -> str:
    return f"https://github.com/{REPOSITORY}"


def binder_url(path: str) -> str:
    """Binder, building the repository from environment.yml, opening ``path`` (from the repository root)."""
    return f"{BINDERHUB_URL}/v2/gh/{REPOSITORY}/{BRANCH}?urlpath={UI}/{path}"


def jupyterhub_url(path: str) -> str | None:
    """The hub's nbgitpuller link: clone (or update) the repository in the user's home, open ``path``."""
    if not JUPYTERHUB_URL:
        return None
    name = REPOSITORY.rsplit("/", 1)[-1]
    query = {"repo": repository_url(), "urlpath": f"{UI}/{name}/{path}"}
    if BRANCH != "HEAD":  # nbgitpuller takes the default branch when none is named
        query["branch"] = BRANCH
    return f"{JUPYTERHUB_URL}/hub/user-redirect/git-pull?{urlencode(query, safe='/')}"


def launch_links(path: str) -> list[tuple[str, str]]:
    """(label, url) of every place ``path`` can be opened, Binder first."""
    links = [("Binder", binder_url(path))]
    hub = jupyterhub_url(path)
    if hub:
        links.append(("JupyterHub", hub))
    return links
