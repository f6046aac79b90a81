"""`rfdm reproduce` on the tiny preset: every registered figure computed, plotted and embedded in the
report; `rfdm figure --list`; an unknown figure ID is bad input."""

import re

from rfdm import registry
from rfdm.cli import main


def test_reproduce_tiny_writes_a_complete_report(tmp_path, capsys):
    gallery = tmp_path / "gallery"
    rc = main(["reproduce", "--preset", "tiny", "--out", str(tmp_path), "--gallery", str(gallery)])
    out = capsys.readouterr().out
    assert rc == 0 and "report:" in out and "gallery:" in out
    html = (tmp_path / "report.html").read_text()
    figures = [f for f in registry.all_figures() if f.id not in registry.NOT_IN_REPRODUCE]  # run only with --only
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
