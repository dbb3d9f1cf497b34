"""The ``meddata`` command as a user runs it (subprocesses, real files)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from testutil import EXAMPLES, ROOT

from meddata.cli import build_parser

MEDDATA = [sys.executable, "-m", "meddata.cli"]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*MEDDATA, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _verbs() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    return sorted(sub.choices)


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("meddata ")


@pytest.mark.parametrize("verb", _verbs())
def test_every_verb_has_help(verb):
    out = run(verb, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: meddata" in out.stdout and len(out.stdout.splitlines()) > 2


def test_build_prints_funnel_and_locations(tmp_path):
    out = run("build", str(EXAMPLES / "recipes" / "quickstart.yaml"), "--out", str(tmp_path / "qs"))
    assert out.returncode == 0, out.stderr
    assert "read 500 = out" in out.stdout
    assert "length_filter" in out.stdout and "dropped too_long" in out.stdout
    assert f"dataset:    {tmp_path / 'qs' / 'dataset'}" in out.stdout
    # progress bars end on the final count even when stderr is not a terminal (issue 12 item 10)
    assert "read table: 300 rows" in out.stderr and "read table: 200 rows" in out.stderr
    again = run("build", str(EXAMPLES / "recipes" / "quickstart.yaml"), "--out", str(tmp_path / "qs"))
    assert "reused finished steps: table, table, normalize_text, length_filter" in again.stdout


def test_limit_reads_fewer_rows(tmp_path):
    out = run("build", str(EXAMPLES / "recipes" / "quickstart.yaml"), "--out", str(tmp_path / "qs"), "--limit", "20")
    assert out.returncode == 0, out.stderr
    assert "read 40 = out" in out.stdout


def test_bad_recipe_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ninputs:\n  - {builder: table, path: missing.jsonl, columns: {text: t}}\nsteps: [normalize_text]\n"
    )
    out = run("validate", str(bad))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"{bad}: inputs[0] 'table': parameter 'path': file not found: missing.jsonl" in out.stderr
    assert "Value error" not in out.stderr


_WITHOUT = ("import sys; sys.modules[{module!r}] = None  # as if the extra were not installed\n"
            "from meddata.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize("module,extra,args", [
    ("matplotlib", "report", ["report", "{build}", "--out", "{tmp}/r.html"]),
    ("torch", "train", ["train", str(EXAMPLES / "train" / "sft_lora.yaml"), "--check"]),
])
def test_a_missing_extra_is_one_line_naming_the_install(tmp_path, module, extra, args):
    build = run("build", str(EXAMPLES / "recipes" / "quickstart.yaml"), "--out", str(tmp_path / "qs"), "--limit", "5")
    assert build.returncode == 0, build.stderr
    argv = [a.format(build=tmp_path / "qs", tmp=tmp_path) for a in args]
    out = subprocess.run([sys.executable, "-c", _WITHOUT.format(module=module), *argv], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        f'meddata {args[0]}: error: {module} is not installed; pip install "meddata[{extra}]"')


@pytest.mark.parametrize("recipe,expected", [
    ("name: x\ninput:\n  - {builder: table, path: p.jsonl}\n", "unknown field 'input'; did you mean 'inputs'?"),
    ("name: x\ninputs:\n  - {builder: table, path: p.jsonl, columns: {text: question}}\noutput: {format: [jsonl]}\n",
     "output: unknown field 'format'; did you mean 'formats'?"),
    ("name: x\ninputs:\n  - {builder: table, path: p.jsonl, columns: {text: question}}\n"
     "steps: [{length_filter: {min_char: 3}}]\n",
     "steps[0] 'length_filter': unknown parameter 'min_char'; did you mean 'min_chars'?"),
])
def test_misspelt_recipe_keys_get_a_did_you_mean(tmp_path, recipe, expected):
    (tmp_path / "p.jsonl").write_text('{"question": "What is anaemia?"}\n')
    path = tmp_path / "r.yaml"
    path.write_text(recipe)
    out = run("validate", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"meddata validate: error: {path}: {expected}"


def test_steps_lists_builders_and_filters():
    out = run("steps")
    assert out.returncode == 0
    names = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    assert {"table", "normalize_text", "length_filter"} <= names


def test_steps_params_print_type_names_real_defaults_and_recipe_keys():
    from meddata import registry

    out = run("steps", "--params")
    assert out.returncode == 0, out.stderr
    for internal in ("<class", "PydanticUndefined", "AfterValidator", "Annotated", "typing.", "<function"):
        assert internal not in out.stdout, internal
    lines = out.stdout.splitlines()
    exam = lines.index(next(line for line in lines if line.startswith("exam ")))
    block_end = next(i for i in range(exam + 1, len(lines)) if not lines[i].startswith(" "))
    assert "    as: 'eval' | 'instruction' (default 'eval')" in "\n".join(lines[exam:block_end])
    assert not any(line.strip().startswith("as_:") for line in lines)
    assert any(line.strip() == "path: str (required)" for line in lines)
    # a parameter whose default comes from a factory shows that default, not "required"
    factories = [(name, key, info.default_factory()) for name, cls in registry.all_steps().items()
                 for key, info in cls.Params.model_fields.items() if info.default_factory is not None]
    assert factories
    text = out.stdout
    for name, key, value in factories:
        assert f"{key}: " in text and f"(default {value!r})" in text, (name, key)


def test_every_shipped_folder_is_a_found_package():
    """setuptools warns at every install ("Package 'meddata.builders.data' is absent from the
    `packages` configuration") for each folder under a package that is not listed, and leaves
    it out of the wheel: setup.py finds them all, data folders included."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("meddata_setup", ROOT / "setup.py")
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)
    listed = set(setup.packages())
    found = set()
    for package, folder in setup.PACKAGE_DIRS.items():
        for d in [ROOT / folder, *(p for p in (ROOT / folder).rglob("*") if p.is_dir())]:
            if "__pycache__" in d.parts or not any(f.is_file() for f in d.iterdir()):
                continue
            rel = d.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    assert {"meddata.publish.templates", "meddata.filters.deid.model.ner"} <= found
    assert found - listed == set()


def test_non_editable_install_in_new_venv(tmp_path):
    """`pip install .` into a fresh venv; import the mapped packages from another folder."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    # Dependencies come from this environment's site-packages (no network in tests);
    # meddata itself is built and installed from the source tree, not editable.
    site = sysconfig.get_paths()["purelib"]
    new_site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    (Path(new_site) / "deps.pth").write_text(site + "\n")
    wheel = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
         str(ROOT)], capture_output=True, text=True, timeout=600,
    )
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    (whl,) = (tmp_path / "dist").glob("meddata-*.whl")
    shipped = set(zipfile.ZipFile(whl).namelist())
    mapping = {"meddata": "meddata", "builders": "meddata/builders", "filters": "meddata/filters",
               "trainers": "meddata/trainers"}
    for folder, target in mapping.items():
        for f in (ROOT / folder).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                rel = f.relative_to(ROOT / folder).as_posix()
                assert f"{target}/{rel}" in shipped, f"{folder}/{rel} is missing from the wheel (pyproject packages?)"
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(whl)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    check = subprocess.run(
        [str(py), "-c", "import meddata, meddata.filters, meddata.builders, meddata.trainers; "
                        "from meddata import registry; print(meddata.__file__); print(sorted(registry.all_steps()))"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    location, steps = check.stdout.splitlines()[:2]
    assert location.startswith(new_site), location
    assert "'length_filter'" in steps and "'table'" in steps
