"""Check a built site: every local link resolves, and no page needs another site to render.

``python book/check_links.py build/site`` (``make site`` runs it) reads every HTML page and CSS
file in the folder and reports, one line each, and exits 1 if there is any:

- a local ``href`` or ``src`` (any tag; ``srcset`` too) naming a file the site does not have (a
  folder means its ``index.html``), or a ``#fragment`` that is no ``id`` (or ``<a name>``) in the
  page it points to;
- a resource the browser loads by itself (``<script src>``, ``<link href>`` other than navigation
  links, ``<img>``, ``<iframe>``, media, ``url(...)`` in CSS) that is on another site, since the
  site must render with no network; links a reader follows (``<a href>``) may go anywhere;
- a local ``url(...)`` in a stylesheet naming a file the site does not have (fonts, icons);
- nbgrader's solution or hidden-test markers in a page (the site never shows solutions/).

Links that JavaScript builds at run time (the search page's results) are not seen.
"""
from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: <link rel=...> values a reader follows rather than the browser loading them.
NAVIGATION_RELS = {"index", "search", "next", "prev", "canonical", "alternate", "author", "license", "help",
                   "first", "last", "up", "bookmark", "external", "nofollow", "noopener", "noreferrer"}
LOADED = {("script", "src"), ("img", "src"), ("img", "srcset"), ("iframe", "src"), ("frame", "src"),
          ("embed", "src"), ("object", "data"), ("source", "src"), ("source", "srcset"), ("video", "src"),
          ("video", "poster"), ("audio", "src"), ("track", "src"), ("input", "src"), ("link", "href"),
          ("image", "href"), ("use", "href"), ("image", "xlink:href"), ("use", "xlink:href")}
LINK_ATTRS = {"href", "src", "srcset", "data", "poster", "xlink:href"}
MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "=== BEGIN MARK SCHEME ===")
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str, int]] = []  # (tag, attribute, value, line)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("id", "name" if tag == "a" else None):
            if name and values.get(name):
                self.ids.add(values[name])
        if tag == "link" and set((values.get("rel") or "").lower().split()) & NAVIGATION_RELS:
            tag = "link-nav"
        for name, value in attrs:
            if name in LINK_ATTRS and value is not None:
                self.refs.append((tag, name, value.strip(), self.getpos()[0]))

    handle_startendtag = handle_starttag


def _urls(attribute: str, value: str) -> list[str]:
    if "srcset" in attribute:  # "a.png 1x, b.png 2x"
        return [part.split()[0] for part in value.split(",") if part.split()]
    return [value]


def _off_site(url: str) -> bool:
    return url.startswith("//") or (bool(_SCHEME.match(url)) and not url.lower().startswith(("data:", "blob:")))


def _target(site: Path, page: Path, url: str) -> tuple[Path | None, str]:
    """The file a local URL names (None: the page itself) and its fragment."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if not path:
        return None, unquote(parts.fragment)
    target = (site / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
    if path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def check_site(site: Path) -> list[str]:
    """Every problem found in the built site at ``site``, one line each (empty: none)."""
    site = Path(site)
    if not (site / "index.html").is_file():
        return [f"{site}: no index.html (is this a built site?)"]
    # Pages, not the templates some themes leave among their static files.
    pages = {p.resolve(): p for p in sorted(site.rglob("*.html")) if "_static" not in p.relative_to(site).parts}
    parsed: dict[Path, _Page] = {}

    def page_of(path: Path) -> _Page:
        key = path.resolve()
        if key not in parsed:
            parser = _Page()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            parser.close()
            parsed[key] = parser
        return parsed[key]

    problems = []
    for page in pages.values():
        name = page.relative_to(site)
        text = page.read_text(encoding="utf-8", errors="replace")
        problems += [f"{name}: shows {marker!r}: solution text in the site" for marker in MARKERS if marker in text]
        for tag, attribute, value, line in page_of(page).refs:
            for url in _urls(attribute, value):
                where = f"{name}:{line}: <{tag} {attribute}={url!r}>"
                if not url or url.startswith(("mailto:", "tel:", "javascript:", "data:")):
                    continue
                if _off_site(url):
                    if (tag, attribute) in LOADED:
                        problems.append(f"{where} loads from another site: the page needs the network")
                    continue
                target, fragment = _target(site, page, url)
                file = target or page
                if target is not None and not target.is_file():
                    problems.append(f"{where}: no such file in the site")
                elif fragment and file.suffix == ".html" and fragment not in page_of(file).ids:
                    problems.append(f"{where}: {file.relative_to(site)} has no id {fragment!r}")
    for sheet in sorted(site.rglob("*.css")):
        text = sheet.read_text(encoding="utf-8", errors="replace")
        for match in _CSS_URL.finditer(text):
            url = match.group(2).strip()
            line = text.count("\n", 0, match.start()) + 1
            where = f"{sheet.relative_to(site)}:{line}: url({url})"
            if url.startswith(("data:", "#")):
                continue
            if _off_site(url):
                problems.append(f"{where} loads from another site: the page needs the network")
                continue
            target, _ = _target(site, sheet, url)
            if target is not None and not target.is_file():
                problems.append(f"{where}: no such file in the site")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python book/check_links.py SITE_FOLDER", file=sys.stderr)
        return 2
    problems = check_site(Path(args[0]))
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in {args[0]}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
