"""lab.code shows the package's real code: the source of what runs, and marked regions of page scripts."""
from __future__ import annotations

import pytest

from lab import code
from servers.feed.sse import SSEHandler


def test_code_text_is_the_running_source_with_its_place():
    where, source = code.code_text(SSEHandler)
    assert where.startswith("servers/feed/sse.py:") and int(where.split(":")[1]) > 0
    assert source.startswith("class SSEHandler")
    assert "def " in source


def test_script_text_reads_a_marked_region_and_names_the_others(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<script>\n  // region: open\n  const s = new EventSource('x');\n    s.onmessage = show;\n"
                    "  // endregion\n  // region: other\n  1;\n  // endregion\n</script>\n")
    where, source = code.script_text(page, "open")
    assert source == "const s = new EventSource('x');\n  s.onmessage = show;\n"
    assert where.endswith("page.html:3")
    with pytest.raises(LookupError, match=r"\['open', 'other'\]"):
        code.script_text(page, "missing")


def test_show_prints_outside_a_kernel(capsys):
    code.show_code(SSEHandler)
    out = capsys.readouterr().out
    assert out.startswith("# servers/feed/sse.py:") and "class SSEHandler" in out
