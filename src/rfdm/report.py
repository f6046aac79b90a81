"""One self-contained HTML report of reproduced figures (PNG embedded as base64)."""

from __future__ import annotations

import base64
import html
import platform
from pathlib import Path

from . import __version__


VERDICT_COLOURS = {"agrees": "#d8f0d8", "differs": "#f8d8d0", "no published number": "#eeeeee",
                   "not converged": "#f8e8b0"}


def report_provenance(preset: str, seed: int = 0) -> dict:
    """Version, commit (git, when the package runs from a checkout), date, seed, device, preset, platform."""
    import datetime
    import os
    import subprocess

    from .backend import resolve_device

    commit = "unknown"
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": __version__, "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "seed": seed,
            "device": resolve_device(None).name, "preset": preset,
            "platform": f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPU cores"}


def collect_entries(out_dir) -> list:
    """The entries of every figure done under ``out_dir`` (``ID/entry.json`` written by
    rfdm.registry.run_figure), in registry order, then any others."""
    import json

    from .registry import FIGURES

    found = {}
    for path in sorted(Path(out_dir).glob("*/entry.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found[entry.get("id", path.parent.name)] = entry
    order = [fid for fid in FIGURES if fid in found] + [fid for fid in found if fid not in FIGURES]
    return [found[fid] for fid in order]


def write_report_json(entries: list, path, provenance: dict) -> str:
    """``report.json``: the provenance and, per figure id, {"id", "setting", "published", "measured",
    "tolerance", "verdict", "reason"} (with "checks", "title", "seconds", "preset")."""
    from .results import write_json

    figures = {}
    for e in entries:
        r = dict(e["report"])
        r.update(title=e["title"], seconds=e["seconds"], preset=e.get("preset"))
        figures[e["id"]] = r
    counts = {}
    for r in figures.values():
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    write_json(path, {"provenance": provenance, "verdicts": counts, "figures": figures})
    return str(path)


def _value(v) -> str:
    if isinstance(v, dict) and "value" in v:
        v = v["value"]
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return "—" if v is None else str(v)


def _checks_table(report: dict) -> list:
    checks = report.get("checks")
    if not checks:
        rows = ["<table><tr><th>measured</th><th>value</th></tr>"]
        rows += [f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_value(v))}</td></tr>"
                 for k, v in (report.get("measured") or {}).items()]
        return rows + ["</table>"]
    rows = ["<table><tr><th>quantity</th><th>published (source)</th><th>measured</th><th>tolerance</th>"
            "<th>verdict</th><th>reason</th></tr>"]
    for c in checks:
        tol = c.get("tolerance") or {}
        tol_text = tol.get("reason", "") if isinstance(tol, dict) else str(tol)
        if isinstance(tol, dict):
            bound = tol.get("relative") or tol.get("absolute") or tol.get("interval")
            if bound is not None:
                tol_text = f"{_value(bound)}{' relative' if tol.get('relative') else ''}: {tol_text}"
        verdict = c.get("verdict", "")
        rows.append(f"<tr><td>{html.escape(str(c.get('name')))}"
                    f"{' <i>(internal: two readings)</i>' if c.get('kind') == 'internal' else ''}</td>"
                    f"<td>{html.escape(_value(c.get('published')))} ({html.escape(str(c.get('source') or '—'))})</td>"
                    f"<td>{html.escape(_value(c.get('measured')))}</td><td>{html.escape(tol_text)}</td>"
                    f"<td style='background:{VERDICT_COLOURS.get(verdict, '#fff')}'>{html.escape(verdict)}</td>"
                    f"<td>{html.escape(str(c.get('reason') or ''))}</td></tr>")
    return rows + ["</table>"]


def write_report(entries: list, path, provenance: dict) -> str:
    """One self-contained HTML page: the provenance, a summary table of every figure's verdict against the
    papers, then each figure with its setting, its checks (published value and source, measured value,
    tolerance, verdict, reason) and its PNGs embedded."""
    preset = provenance.get("preset", "")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>rfdm reproduce ({html.escape(preset)})</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;"
             "margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;"
             "font-size:90%}.claim{background:#f4f7fb;padding:.6em}</style></head><body>",
             f"<h1>rfdm {html.escape(__version__)}: the papers' figures, reproduced and checked</h1>",
             "<p>" + "; ".join(f"{html.escape(k)} <b>{html.escape(str(v))}</b>" for k, v in provenance.items()) + "</p>",
             "<h2>Verdicts</h2><table><tr><th>figure</th><th>verdict</th><th>reason</th><th>seconds</th></tr>"]
    for e in entries:
        r = e["report"]
        parts.append(f"<tr><td><a href='#{e['id']}'>{html.escape(e['title'])}</a></td>"
                     f"<td style='background:{VERDICT_COLOURS.get(r['verdict'], '#fff')}'>{html.escape(r['verdict'])}</td>"
                     f"<td>{html.escape(str(r.get('reason') or ''))}</td><td>{e['seconds']:.1f}</td></tr>")
    parts.append("</table>")
    for e in entries:
        r = e["report"]
        parts.append(f"<h2 id='{e['id']}'>{html.escape(e['title'])}</h2>")
        parts.append(f"<p class='claim'><b>Claim.</b> {html.escape(e['claim'])}<br><b>Published.</b> "
                     f"{html.escape(e['published'])}<br><b>Verdict.</b> {html.escape(r['verdict'])}: "
                     f"{html.escape(str(r.get('reason') or ''))}<br><b>Preset.</b> {html.escape(str(e.get('preset')))}"
                     f"{'' if (r.get('setting') or {}).get('same_as_published') else ' (not the published setting)'}</p>")
        parts += _checks_table(r)
        for png in e["figures"]:
            if not Path(png).exists():
                continue
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
    lines = [f"# Gallery: the papers' figures and the talk's (`--preset {preset}`)", "",
             f"Made by `rfdm reproduce --preset {preset} --gallery {folder.as_posix()}` with rfdm {__version__}, "
             f"Python {platform.python_version()} on {platform.machine()} ({os.cpu_count()} CPU cores, device "
             f"{resolve_device(None).name}). "
             "Each figure's dataset (arrays, resolved configuration, version and seed) is written next to its PNG "
             "by `rfdm figure ID`.", ""]
    for e in entries:
        lines += [f"## `{e['id']}`: {e['title']}", "", f"**Claim.** {e['claim']}", "",
                  f"**Published.** {e['published']}", "",
                  f"**Verdict.** {e['report']['verdict']}: {e['report'].get('reason') or ''}", "", f"`rfdm figure {e['id']} --preset {preset}` "
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
