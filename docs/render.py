"""Render the markdown pages of docs/ into docs/_build/ as HTML (used by ``nox -s docs``).

Offline; fails (exit 1) on a relative link that points nowhere, so the built site has no
dead links. The API reference is built next to it by pdoc (docs/_build/api/).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import markdown

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "_build"
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
STYLE = (
    "body{max-width:52rem;margin:2rem auto;padding:0 1rem;font:16px/1.5 system-ui,sans-serif}"
    "pre{background:#f5f5f5;padding:.8rem;overflow:auto}code{font-size:.92em}"
    "table{border-collapse:collapse}"
    "td,th{border:1px solid #ddd;padding:.3rem .5rem;vertical-align:top}"
)
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · wrenn</title>
<style>{style}</style></head><body>
<p><a href="{root}index.html">wrenn docs</a> · <a href="{root}api/wrenn.html">API reference</a></p>
{body}</body></html>
"""


def main() -> int:
    pages = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
    broken = []
    for page in pages:
        text = page.read_text()
        for target, _ in LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (page.parent / target).resolve().exists():
                broken.append(f"{page.relative_to(DOCS)}: {target}")
        html_text = LINK.sub(
            lambda m: "](" + re.sub(r"\.md$", ".html", m.group(1)) + (m.group(2) or "") + ")",
            text,
        )
        body = markdown.markdown(html_text, extensions=["tables", "fenced_code"])
        rel = page.relative_to(DOCS).with_suffix(".html")
        root = "../" * (len(rel.parts) - 1)
        title = text.splitlines()[0].lstrip("# ").strip() if text else rel.stem
        target_file = OUT / rel
        target_file.parent.mkdir(parents=True, exist_ok=True)
        target_file.write_text(PAGE.format(title=title, root=root, body=body, style=STYLE))
    for image in DOCS.glob("*.png"):
        (OUT / image.name).write_bytes(image.read_bytes())
    if broken:
        print("broken links:\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    print(f"rendered {len(pages)} pages into {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
