"""Every command the README shows works as written (issue 26).

Each command of the README's ``bash`` blocks, and each ``cervix ...`` in its text, is parsed by
the real parser, so a renamed or removed option fails here. The cheap ones are then run, as
written, with generated data standing in for the reader's folders; the GPU recipe runs up to the
point where a real GPU and the ImageNet download are needed (a faked GPU, the download and the
training stopped and recorded). The ones that train a book or serve JupyterLab are run, at the
smoke profile, by the test named beside them in :data:`ELSEWHERE`, and this test checks that
test exists.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Commands run elsewhere (prefix -> "tests/FILE.py::test_name" or "CI: FILE").
ELSEWHERE = {
    "make book": "tests/test_book_chapters.py::test_all_five_chapters_execute_and_build",
    "make test": "CI: .ci/run",
    "git clone": "CI: .ci/run",  # CI runs in a fresh clone of the repository
    "pip install -e": "CI: Makefile",  # make installs with pip install -e '.[test,ray]'
    "jupyter-book build book/": "tests/test_book.py::test_plain_jupyter_book_build_as_the_readme_says",
    "jupyter lab notebooks/": "tests/test_book.py::test_jupyterlab_serves_notebooks_and_starts_a_kernel",
    "cervix book --data /data/my-set": "tests/test_book_class_folders.py::test_every_chapter_builds_with_no_error",
    "cervix train --model": "tests/test_engine.py::test_cli_train_evaluate_compare",
    "cervix evaluate": "tests/test_engine.py::test_cli_train_evaluate_compare",
    "cervix compare": "tests/test_engine.py::test_cli_train_evaluate_compare",
    "cervix explain": "tests/test_explain.py::test_explain_command_writes_the_fig2_panel",
}


def _blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def readme_commands() -> list[str]:
    """The README's shell commands: one a line of its bash blocks, comments and prompts left out,
    ``.venv/bin/`` dropped (the README says ``cervix`` is that file after ``make``)."""
    commands = []
    for block in _blocks():
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line.replace(".venv/bin/", ""))
    return commands


def inline_cervix_commands() -> list[str]:
    """``cervix ...`` spans of the README's text (outside code blocks) that give options and no
    placeholder (``cervix book`` alone names the command; ``--model NAME`` is a form, not a command)."""
    text = re.sub(r"```.*?```", "", README.read_text(), flags=re.S)
    return [c for c in re.findall(r"`(cervix [a-z][^`]*)`", text) if " --" in c and not re.search(r"\b[A-Z]{2,}\b", c)]


def _cervix_argv(command: str) -> list[str]:
    return shlex.split(command)[1:]


def test_the_readme_shows_the_commands_a_reader_needs():
    commands = readme_commands()
    assert commands[:2] == ["make book", "make test"]
    for needed in ("jupyter lab notebooks/", "jupyter-book build book/", "papermill ", "cervix --version",
                   "cervix info /data/sipakmed", "cervix plan --profile paper --data /data/sipakmed",
                   "cervix book --profile paper --data /data/sipakmed"):
        assert any(c.startswith(needed) for c in commands), needed


def test_every_cervix_command_of_the_readme_parses():
    from cervixlib.cli import build_parser

    parser = build_parser()
    cervix = [c for c in readme_commands() if c.startswith("cervix ")] + inline_cervix_commands()
    assert len(cervix) >= 12
    for command in cervix:
        argv = _cervix_argv(command)
        if argv == ["--version"]:
            continue
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"README: {command!r} does not parse")


def test_every_readme_command_is_run_here_or_by_a_named_test():
    here = ("papermill ", "python -c", "cervix --version", "cervix info ", "cervix plan ", "cervix synth ",
            "cervix book --profile paper --data /data/sipakmed")
    for command in readme_commands():
        if command.startswith(here):
            continue
        where = next((w for prefix, w in ELSEWHERE.items() if command.startswith(prefix)), None)
        assert where, f"README: {command!r} is neither run here nor listed in ELSEWHERE"
        if where.startswith("CI: "):
            assert (ROOT / where[4:]).is_file(), where
            continue
        path, name = where.split("::")
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), flags=re.M), where
    ci, make = (ROOT / ".ci" / "run").read_text(), (ROOT / "Makefile").read_text()
    assert "make test" in ci and "-e '.[test,ray]'" in make
    assert re.search(r"^book: .*\n\t\$\(BIN\)/cervix book --profile \$\(PROFILE\)", make, flags=re.M)


def test_no_link_leaves_the_repository_except_the_papers_and_the_datasets_pages():
    text = README.read_text()
    for target in re.findall(r"\]\(([^)]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text):
        if target.startswith("#"):
            continue
        if target.startswith("http"):
            assert target == "https://www.cs.uoi.gr/~marina/sipakmed.html", target
        else:
            assert (ROOT / target).resolve().is_relative_to(ROOT) and (ROOT / target).exists(), target
    for path in re.findall(r"`((?:docs|benchmarks|book|notebooks)/[\w./-]+\.(?:md|py|yml|ipynb))`", text):
        assert (ROOT / path).exists(), path
    assert "../shared" not in text


def test_the_readme_is_short_and_holds_no_timing_table():
    text = README.read_text()
    assert len(text.splitlines()) <= 180  # about half of the 300 lines it had
    tables = [line for line in text.splitlines() if line.startswith("|")]
    assert not any(re.search(r"\d+ (min|s)\b", line) for line in tables)


# --------------------------------------------------------------------------- run as written
def test_the_papermill_command_prepares_as_written(tmp_path):
    """papermill's own parser takes the README's line (``--prepare-only``: parameters injected,
    nothing executed; the chapters are executed by the book's tests)."""
    command = next(c for c in readme_commands() if c.startswith("papermill "))
    argv = shlex.split(command)
    argv[argv.index("out.ipynb")] = str(tmp_path / "out.ipynb")
    exe = Path(sys.executable).with_name("papermill")
    subprocess.run([str(exe), *argv[1:], "--prepare-only"], cwd=ROOT, check=True, capture_output=True, timeout=120)
    import nbformat

    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'profile = "smoke"' in injected.source and 'models = ["resnet50"]' in injected.source


def test_the_gpu_check_and_the_version_run_as_written(capsys):
    from cervixlib import __version__
    from cervixlib.cli import main

    command = next(c for c in readme_commands() if c.startswith("python -c"))
    out = subprocess.run([sys.executable, *shlex.split(command)[1:]], capture_output=True, text=True, check=True,
                         timeout=120).stdout.split()
    assert len(out) == 3 and out[1] in ("True", "False") and out[2].isdigit()
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"cervix {__version__}"


def _substituted(command: str, roots: dict[str, Path]) -> list[str]:
    argv = _cervix_argv(command)
    return [str(roots.get(a, a)) for a in argv]


def test_the_gpu_recipe_runs_up_to_the_gpu_and_the_download(synth_root, class_folder_root, tmp_path, monkeypatch,
                                                           capsys):
    """Steps 2 to 4 of "Reproduce the paper on a GPU", from another working folder, with a faked
    GPU; the generated SIPaKMeD-compatible set stands in for the download."""
    import cervixlib._cli_options as options
    import cervixlib.models.weights as weights
    import cervixlib.parallel as parallel
    from cervixlib.book import BookError
    from cervixlib.cli import main
    from cervixlib.config import IMAGENET_BACKBONES

    roots = {"/data/sipakmed": synth_root, "/data/my-set": class_folder_root}
    monkeypatch.chdir(tmp_path)  # not the clone: the book's files are found all the same
    monkeypatch.setattr(options, "_gpu_count", lambda: 1)
    for command in [c for c in readme_commands() if c.startswith(("cervix info ", "cervix plan "))]:
        assert main(_substituted(command, roots)) == 0, command
        out = capsys.readouterr().out
        if command.startswith("cervix plan --profile paper"):
            assert re.search(r"Run plan of the paper profile: \d+ runs", out)
            assert "projected" in out.lower() and "H200" in out

    fetched, trained = [], []
    monkeypatch.setattr(weights, "prefetch_imagenet", lambda models: fetched.extend(models))

    def stop(plan, **kwargs):
        trained.append(plan)
        raise BookError("stopped here: the real runs need the GPU")

    monkeypatch.setattr(parallel, "train_plan", stop)
    command = next(c for c in readme_commands() if c.startswith("cervix book --profile paper --data /data/sipakmed"))
    assert main(_substituted(command, roots) + ["--runs", str(tmp_path / "runs"), "--no-build"]) != 0
    (plan,) = trained
    ours = [r.config for r in plan.runs if r.config.data.split == "group" and r.config.model in IMAGENET_BACKBONES]
    assert ours and {c.weights for c in ours} == {"imagenet"}  # the paper profile's default for ours
    assert {c.data.image_size for c in ours} == {224} and {c.epochs for c in ours} == {50}
    assert fetched  # the ImageNet files would be fetched before any run
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("*/config.json"))


def test_cervix_synth_runs_as_written_at_a_smaller_scale(tmp_path, monkeypatch, capsys):
    from cervixlib.cli import main

    command = next(c for c in readme_commands() if c.startswith("cervix synth "))
    argv = _cervix_argv(command)
    argv[argv.index("--scale") + 1] = "0.01"  # the README's scale only takes longer
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    assert "synthetic" in capsys.readouterr().out.lower()
    assert any((tmp_path / argv[1]).rglob("*.bmp"))
