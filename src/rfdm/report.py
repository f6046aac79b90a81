"""One self-contained HTML report of reproduced figures (PNG embedded as base64)."""

from __future__ import annotations

import base64
import html
import platform
from pathlib import Path

from . import __version__


def write_report(entries: list, path, preset: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>rfdm reproduce ({preset})</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
             ".claim{background:#f4f7fb;padding:.6em}</style></head><body>",
             f"<h1>rfdm {html.escape(__version__)}: reproduction of the talk</h1>",
             f"<p>preset <b>{html.escape(preset)}</b>; Python {platform.python_version()} on "
             f"{html.escape(platform.machine())}; {len(entries)} figures.</p>",
             "<table><tr><th>figure</th><th>seconds</th></tr>"]
    for e in entries:
        parts.append(f"<tr><td><a href='#{e['id']}'>{html.escape(e['title'])}</a></td><td>{e['seconds']:.1f}</td></tr>")
    parts.append("</table>")
    for e in entries:
        parts.append(f"<h2 id='{e['id']}'>{html.escape(e['title'])}</h2>")
        parts.append(f"<p class='claim'><b>Claim.</b> {html.escape(e['claim'])}<br><b>Published.</b> "
                     f"{html.escape(e['published'])}</p>")
        parts.append("<table><tr><th>measured</th><th>value</th></tr>")
        for k, v in e["measured"].items():
            parts.append(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>")
        parts.append("</table>")
        for png in e["figures"]:
            data = base64.b64encode(Path(png).read_bytes()).decode()
            parts.append(f"<figure><img alt='{html.escape(Path(png).name)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(Path(png).name)}</figcaption></figure>")
    parts.append("</body></html>")
    path = Path(path)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return str(path)


def write_gallery(entries: list, folder, preset: str) -> str:
    """A Markdown gallery (``folder/README.md``) of reproduced figures: for each, the claim, the published and
    measured numbers, the command that makes it, its runtime, and the PNG copied next to the page."""
    import os
    import shutil

    from .backend import resolve_device

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# Gallery: the figures of the talk (`--preset {preset}`)", "",
             f"Made by `rfdm reproduce --preset {preset} --gallery {folder.as_posix()}` with rfdm {__version__}, "
             f"Python {platform.python_version()} on {platform.machine()} ({os.cpu_count()} CPU cores, device "
             f"{resolve_device(None).name}). "
             "Each figure's dataset (arrays, resolved configuration, version and seed) is written next to its PNG "
             "by `rfdm figure ID`.", ""]
    for e in entries:
        lines += [f"## `{e['id']}`: {e['title']}", "", f"**Claim.** {e['claim']}", "",
                  f"**Published.** {e['published']}", "", f"`rfdm figure {e['id']} --preset {preset}` "
                  f"({e['seconds']:.1f} s)", "", "| measured | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in e["measured"].items()]
        lines.append("")
        for png in e["figures"]:
            name = f"{e['id']}-{Path(png).name}"
            shutil.copyfile(png, folder / name)
            lines += [f"![{e['id']}]({name})", ""]
    path = folder / "README.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)
    return str(path)
