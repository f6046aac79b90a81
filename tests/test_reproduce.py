"""`rfdm reproduce`: every registered figure computed, plotted and embedded in the report (tiny preset,
slow); report.json with a verdict per figure, `--only` updating one entry, an interrupted run keeping the
figures done; `rfdm figure --list`; an unknown figure ID is bad input."""

import json
import re

import pytest

from rfdm import registry
from rfdm.cli import main

REPORT_KEYS = {"id", "setting", "published", "measured", "tolerance", "verdict", "reason"}
VERDICTS = {"agrees", "differs", "no published number", "not converged"}


@pytest.mark.slow
def test_reproduce_tiny_writes_a_complete_report(tmp_path, capsys):
    gallery = tmp_path / "gallery"
    rc = main(["reproduce", "--preset", "tiny", "--out", str(tmp_path), "--gallery", str(gallery)])
    out = capsys.readouterr().out
    assert rc == 0 and "report:" in out and "gallery:" in out
    html = (tmp_path / "report.html").read_text()
    figures = [f for f in registry.all_figures() if f.id not in registry.NOT_IN_REPRODUCE]
    for f in figures:
        assert f"id='{f.id}'" in html
    n_png = sum(len(registry_pngs) for registry_pngs in [re.findall(r"data:image/png;base64,", html)])
    assert n_png >= len(figures)
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".staging-*"))
    page = (gallery / "README.md").read_text()
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", page)
    assert len(images) >= len(figures) and all((gallery / name).stat().st_size > 0 for name in images)
    for f in figures:
        assert f"`rfdm figure {f.id} --preset tiny`" in page


def test_figure_list_and_unknown_id(tmp_path, capsys):
    assert main(["figure", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "spectrum-isotropic" in listed and "mixture-outlier" in listed
    rc = main(["figure", "no-such-figure", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown figure" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    rc = main(["reproduce", "--only", "spectrum-isotropic,nope", "--out", str(tmp_path / "y")])
    assert rc == 2 and not (tmp_path / "y").exists()


def test_report_json_only_updates_and_interruption_keeps_done_figures(tmp_path, capsys, monkeypatch):
    """Two cheap figures (a talk figure checked against [B25] Fig. 4's caption, a published one): report.json
    has every key per figure id; --only ID reruns one and keeps the other's entry; a run that dies on its
    second figure leaves the first one's entry in the report."""
    out = tmp_path / "rep"
    assert main(["reproduce", "--preset", "tiny", "--only", "spectrum-isotropic,B24-fig3", "--out", str(out),
                 "--quiet"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["figures"]) == {"spectrum-isotropic", "B24-fig3"}
    for entry in rep["figures"].values():
        assert REPORT_KEYS <= set(entry) and entry["verdict"] in VERDICTS
    assert rep["figures"]["spectrum-isotropic"]["verdict"] == "agrees"  # ρ₂ against [B25] Fig. 4's caption
    assert rep["figures"]["B24-fig3"]["verdict"] == "agrees"
    assert {"version", "commit", "date", "seed", "device", "preset"} <= set(rep["provenance"])
    html = (out / "report.html").read_text()
    assert "Verdicts" in html and "id='B24-fig3'" in html and "id='spectrum-isotropic'" in html
    first = rep["figures"]["B24-fig3"]
    assert main(["reproduce", "--preset", "tiny", "--only", "spectrum-isotropic", "--out", str(out), "--quiet"]) == 0
    again = json.loads((out / "report.json").read_text())
    assert set(again["figures"]) == {"spectrum-isotropic", "B24-fig3"} and again["figures"]["B24-fig3"] == first

    calls = []
    real = registry.run_figure

    def dies_on_the_second(fig_id, preset, out_dir, **options):
        calls.append(fig_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(fig_id, preset, out_dir, **options)

    monkeypatch.setattr(registry, "run_figure", dies_on_the_second)
    out2 = tmp_path / "interrupted"
    assert main(["reproduce", "--preset", "tiny", "--only", "spectrum-isotropic,B24-fig3", "--out", str(out2),
                 "--quiet"]) == 130
    kept = json.loads((out2 / "report.json").read_text())
    assert set(kept["figures"]) == {"spectrum-isotropic"}
