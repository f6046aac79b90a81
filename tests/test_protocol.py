"""The experiment protocol: every registered experiment's CLI options, sweep kind and figure presets come from
its one declared configuration; every declared constraint rejects its violation with one sentence; the package
has no import cycle and no `matplotlib.use` outside the front ends; the worked example of
docs/architecture.md runs (command, sweep, figure)."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import rfdm
from rfdm import protocol, registry
from rfdm.cli import build_parser, main
from rfdm.cli.common import flag_of
from rfdm.errors import InvalidParameterError
from rfdm.protocol import (EXPERIMENTS, FloatList, Integer, OneOf, Real, Tau, WeightsSumToOne, WholeTimes,
                           make_config, specs)
from rfdm.sweep import KINDS

import rfdm.experiments  # noqa: F401  (registers the built-in experiments)

SRC = Path(rfdm.__file__).resolve().parent
ROOT = Path(__file__).resolve().parents[1]  # the repository (the package may be installed elsewhere)
#: the command whose options show an experiment's config (the studies of `sample` share its parser)
COMMAND = {"two-regimes": "sample", "memorization": "sample"}


def _subparser(command):
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices[command]


def _help_of(command, flag):
    p = _subparser(command)
    return next(a.help for a in p._actions if flag in a.option_strings)


def _patchable(cls):
    """A declared float field with a CLI option, a positive default and only interval constraints: its
    default doubled is still valid (so the patched class still builds)."""
    for name, (field, spec) in specs(cls).items():
        if (spec.cli and spec.ratio is None and isinstance(field.default, float) and field.default > 0
                and math.isfinite(field.default) and all(isinstance(c, Real) for c in spec.checks)):
            hi = min((c.hi for c in spec.checks if c.hi is not None), default=math.inf)
            if 2 * field.default <= hi:
                return name, field
    raise AssertionError(f"{cls.__name__} has no patchable field")


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_one_declaration_feeds_help_sweep_kind_and_presets(name, monkeypatch):
    exp = EXPERIMENTS[name]
    cls = exp.config
    field_name, field = _patchable(cls)
    new = 2 * field.default
    monkeypatch.setattr(field, "default", new)
    spec = specs(cls)[field_name][1]
    command = COMMAND.get(name, name)
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    if command in commands:  # a sweep kind only (command=False, no hand-written command) has no --help
        # --help shows the declared default (for sample: next to its study's label)
        label = "" if command == name else f"{name} "
        assert f"{label}{new:g}" in _help_of(command, flag_of(field_name, spec))
        # every declared CLI field has its option
        parser_flags = {s for a in _subparser(command)._actions for s in a.option_strings}
        for fname, (_, s) in specs(cls).items():
            if s.cli:
                flag = flag_of(fname, s)
                assert flag in parser_flags or "--no-" + flag[2:] in parser_flags, (name, fname)
    else:
        assert not exp.command, name
    # the sweep kind's default, when the experiment is sweepable and the field a sweep parameter
    if exp.sweep is not None and field_name in KINDS[name].defaults:
        assert KINDS[name].defaults[field_name] == new
    # the library's make_config and every figure preset that does not override the field
    assert getattr(make_config(cls), field_name) == new
    for fig in registry.all_figures():
        if fig.config is cls:
            for preset in registry.PRESETS:
                if field_name not in fig.fixed and field_name not in fig.presets.get(preset, {}):
                    assert getattr(fig.make_config(preset), field_name) == new, (fig.id, preset)


def test_every_sweepable_experiment_is_a_kind_with_the_declared_defaults():
    for name, exp in EXPERIMENTS.items():
        if exp.sweep is None:
            continue
        defaults = KINDS[name].defaults
        cfg = make_config(exp.config)
        for key, value in defaults.items():
            if key in specs(exp.config):
                got = getattr(cfg, key)
                assert value == got or value == tuple(got), (name, key)
    assert KINDS["dynamics"].defaults["psi_p"] == 16.0 and KINDS["dynamics"].defaults["d"] == 32


def _violations(cls, name, spec):
    """(overrides, what) pairs that break each constraint of one field."""
    out = []
    for rule in spec.checks:
        if isinstance(rule, Integer):
            if rule.lo is not None:
                out.append(({name: rule.lo - 1}, "below"))
            out.append(({name: 2.5}, "not an integer"))
            out.append(({name: True}, "a boolean"))
        elif isinstance(rule, Real):
            if rule.lo is not None:
                out.append(({name: rule.lo if rule.lo_open else rule.lo - 1}, "below"))
            if rule.hi is not None:
                out.append(({name: rule.hi * 2 + 1}, "above"))
            out.append(({name: math.nan}, "nan"))
            out.append(({name: "x"}, "text"))
        elif isinstance(rule, OneOf):
            out.append(({name: "no-such-choice"}, "choice"))
        elif isinstance(rule, FloatList):
            out.append(({name: ()}, "empty"))
            out.append(({name: (1.0, math.nan)}, "nan item"))
            out.append(({name: (1.0, None)}, "empty item"))
        elif isinstance(rule, Tau):
            out.append(({name: -1.0 if rule.single else (1.0, -1.0)}, "negative"))
            if rule.single:
                out.append(({name: (1.0, 2.0)}, "several"))
        elif isinstance(rule, WeightsSumToOne):
            out.append(({rule.of: (1.0, 2.0), name: (0.3, 0.3)}, "sum"))
            out.append(({rule.of: (1.0, 2.0), name: (1.0,)}, "count"))
        elif isinstance(rule, WholeTimes):
            bad = 0.1234567
            ref = getattr(make_config(cls), name)
            out.append(({rule.of: 7, name: (bad,) if isinstance(ref, tuple) else bad}, "whole"))
    return out


def _classes():
    seen = {}
    for exp in EXPERIMENTS.values():
        seen[exp.config.__name__] = exp.config
    for fig in registry.all_figures():
        if fig.config is not None:  # a published figure runs its module's fixed settings (rfdm.published)
            seen[fig.config.__name__] = fig.config
    return [seen[k] for k in sorted(seen)]


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_every_constraint_rejects_its_violation_in_one_sentence(cls):
    make_config(cls)  # the declared defaults are valid
    count = 0
    for name, (_, spec) in specs(cls).items():
        for overrides, what in _violations(cls, name, spec):
            with pytest.raises(InvalidParameterError) as info:
                make_config(cls, **overrides)
            msg = str(info.value)
            assert "\n" not in msg and msg.endswith(".") and (msg[0].isalnum() or msg[0] in "-|"), (name, what, msg)
            assert len(re.findall(r"\.\s+[A-Z]", msg)) == 0, (name, what, msg)  # one sentence
            count += 1
    assert count >= 5
    print(f"{cls.__name__}: {count} violations rejected")


def test_seed_streams_are_named_and_stable():
    """A named stream does not depend on the other streams asked for; the ordered form is the old spawn."""
    a = protocol.SeedStreams(5).generator("noise").standard_normal(3)
    b = protocol.SeedStreams(5)
    b.generator("other").standard_normal(10)
    np.testing.assert_array_equal(a, b.generator("noise").standard_normal(3))
    assert not np.array_equal(a, protocol.SeedStreams(6).generator("noise").standard_normal(3))
    ordered = protocol.SeedStreams.ordered(5, ("x", "y"))
    ref = np.random.SeedSequence(5).spawn(2)[1]
    np.testing.assert_array_equal(np.random.default_rng(ordered["y"]).random(4), np.random.default_rng(ref).random(4))
    assert protocol.stable_hash("noise") == int("0x" + __import__("hashlib").sha256(b"noise").hexdigest()[:8], 16)


# -- the package's shape -------------------------------------------------------------------------------------

def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, modules: set) -> set:
    """The rfdm modules a file imports anywhere (module level and inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("rfdm"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("rfdm"):
                continue
            for a in node.names:
                if f"{mod}.{a.name}" in modules:
                    out.add(f"{mod}.{a.name}")
                elif a.name != "__version__":  # the version string is no dependency on the package's modules
                    out.add(mod)
    out.discard(name)
    return {m for m in out if m in modules}


def test_the_package_has_no_import_cycle():
    files = sorted(SRC.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    graph = {_module_name(f): _imports(f, modules) for f in files}
    # a package's __init__ that re-exports its own submodules is not a cycle with them
    for mod, deps in graph.items():
        graph[mod] = {d for d in deps if not (d.startswith(mod + ".") and mod != "rfdm")}
        if mod == "rfdm":
            graph[mod] = set()  # rfdm/__init__ re-exports the core; the core imports only __version__ from it
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert "rfdm.cli" in graph and "rfdm.sweep.kinds" in graph


def test_matplotlib_backend_is_chosen_only_by_entry_points():
    allowed = {SRC / "report.py"} | set((SRC / "cli").rglob("*.py"))
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if p not in allowed and re.search(r"matplotlib\.use\(|pyplot", p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_no_theory_reference_to_a_missing_file():
    text = "\n".join(p.read_text(encoding="utf-8") for p in SRC.rglob("*.py"))
    assert "THEORY §" not in text and "THEORY.md" not in text
    sections = set(re.findall(r"^## (\d+)\.", (ROOT / "docs" / "theory.md").read_text(encoding="utf-8"), re.M))
    for cited in re.findall(r"docs/theory\.md §(\d+)", text):
        assert cited in sections, cited


# -- the worked example of docs/architecture.md ----------------------------------------------------------------

def _example_code() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("<!-- example:begin -->", 1)[1].split("<!-- example:end -->", 1)[0]
    return block.split("```python", 1)[1].rsplit("```", 1)[0]


def test_architecture_example_adds_a_command_a_sweep_kind_and_a_figure(tmp_path, capsys, monkeypatch):
    code = _example_code()
    assert 20 <= len([line for line in code.splitlines() if line.strip()]) <= 45
    monkeypatch.setattr(protocol, "EXPERIMENTS", dict(protocol.EXPERIMENTS))
    monkeypatch.setattr(registry, "FIGURES", dict(registry.FIGURES))
    import rfdm.sweep.kinds as kinds

    monkeypatch.setattr(kinds, "EXPERIMENTS", protocol.EXPERIMENTS)
    import sys
    import types

    module = types.ModuleType("architecture_example")
    monkeypatch.setitem(sys.modules, "architecture_example", module)
    exec(compile(code, "docs/architecture.md", "exec"), module.__dict__)  # noqa: S102
    try:
        # the command, generated from the config; its --help shows the declared default
        assert "[default: 40]" in _help_of("noise-variance", "--points")
        assert main(["noise-variance", "--points", "12", "--draws", "3000", "--json", "--out", str(tmp_path / "c")]) == 0
        obj = json.loads(capsys.readouterr().out)
        assert obj["config"]["points"] == 12 and set(obj["files"]) == {"data", "summary", "figure"}
        # Var of 3000 standard normals has relative s.d. sqrt(2/2999) = 0.026; 12 times: max below 5 s.d.
        assert obj["max_relative_error"] < 5 * math.sqrt(2 / 2999)
        assert (tmp_path / "c" / "noise-variance.png").stat().st_size > 0
        assert main(["noise-variance", "--seed", "-1", "--out", str(tmp_path / "bad")]) == 2
        assert "seed" in capsys.readouterr().err and not (tmp_path / "bad").exists()
        # the sweep kind
        from rfdm import sweep as sw

        assert sw.KINDS["noise-variance"].defaults == {"t_max": 2.0, "points": 40, "draws": 4000}
        cfg = tmp_path / "nv.toml"
        cfg.write_text('[sweep]\nkind = "noise-variance"\nout = "res"\n[fixed]\ndraws = 400\n[grid]\nt_max = [1.0, 2.0]\n')
        res = sw.run_sweep(sw.load_config(cfg), workers=1, quiet=True)
        assert res["computed"] == 2 and res["failed"] == []
        # the figure, its tiny preset from the config
        assert registry.get_figure("noise-variance").make_config("tiny").draws == 500
        entry = registry.run_figure("noise-variance", "tiny", tmp_path / "fig")
        assert Path(entry["figures"][0]).stat().st_size > 0 and "max_relative_error" in entry["measured"]
    finally:
        dict.pop(kinds.KINDS, "noise-variance", None)
