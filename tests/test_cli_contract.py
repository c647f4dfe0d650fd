"""The command line's contract for a new user (issue 15): every option has
help text and a shown default, grouped, with examples; every error is one
line in the CLI's own terms with exit status 2, found before any work;
options that would be ignored are refused; a closed pipe ends quietly;
--debug keeps the traceback; shell completion works."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from fastprep.cli import cli, demo_corpus
from test_cli import corpus, fastprep, one_line_error  # noqa: F401 (fixture)

COMMANDS = ("demo", "prep", "vocab", "dedup", "bench")
GROUPS = {
    "prep": ("Input:", "Output:", "Images:", "Consent and takedowns:",
             "Near-duplicates and eval-set leaks:", "Vocabulary:", "Engine", "Run:"),
    "demo": ("Input:", "Output:", "Engine", "Run:"),
}  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_a_shown_default(command):
    proc = fastprep(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: fastprep {command}")
    assert "Examples:" in proc.stdout and f"fastprep {command}" in proc.stdout.split("Examples:")[1]
    assert "``" not in proc.stdout, "no raw reStructuredText"
    for heading in GROUPS.get(command, ()):
        assert heading in proc.stdout, heading
    text = " ".join(proc.stdout.split())
    sub = cli.commands[command]
    ctx = click.Context(sub, info_name=command, show_default=True)
    checked = 0
    for param in sub.params:
        if not isinstance(param, click.Option):
            continue
        record = param.get_help_record(ctx)
        assert record is not None, param.name
        flags, help_text = record
        assert help_text and len(help_text.split("[")[0].strip()) > 5, f"{flags} has no help"
        # what --help prints for this option (rewrapped by the terminal width)
        assert " ".join(help_text.split()) in text, flags
        if not param.is_flag and not param.required:
            assert "[default: " in help_text, f"{flags} shows no default"
            checked += 1
    assert checked >= (20 if command in ("prep", "demo") else 2)


def test_top_level_help_lists_commands_and_examples():
    proc = fastprep("--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: fastprep")
    for command in (*COMMANDS, "completion"):
        assert f"  {command} " in proc.stdout
    assert "Examples:" in proc.stdout and "--debug" in proc.stdout


def _no_work(out: Path) -> None:
    """Nothing was created for a refused command."""
    assert not out.exists(), f"{out} was created"


def test_existing_run_is_refused_in_cli_terms_before_any_work(tmp_path, corpus):  # noqa: F811
    out = tmp_path / "done"
    first = fastprep("prep", str(corpus), "--out", str(out), "--size", "32", "--quiet")
    assert first.returncode == 0, first.stderr
    before = sorted(p.name for p in out.iterdir())
    # without --quiet: a single line also proves no progress (no work) began
    line = one_line_error(fastprep("prep", str(corpus), "--out", str(out), "--size", "32"), "prep")
    assert f"--out {out} already holds a fastprep run" in line
    assert "add --resume" in line and "--overwrite" in line
    assert "resume=True" not in line and "overwrite=True" not in line
    assert sorted(p.name for p in out.iterdir()) == before
    line = one_line_error(
        fastprep("prep", str(corpus), "--out", str(out), "--resume", "--overwrite"), "prep"
    )
    assert "--resume and --overwrite exclude each other" in line


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only folder, or
    for root (who writes anywhere) sysfs, where the kernel refuses new files."""
    if os.name == "nt":
        pytest.skip("no POSIX permissions on Windows")
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        os.chmod(locked, 0o555)
        return locked
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("running as root without sysfs: no folder root cannot write")
    return Path("/sys")


def test_out_that_cannot_be_written_is_one_line_in_cli_terms(tmp_path):
    locked = _unwritable_folder(tmp_path)
    out = locked / "fastprep-out"
    try:
        proc = fastprep("prep", demo_corpus(), "--out", str(out))
        line = one_line_error(proc, "prep")
        assert line.startswith(
            f"fastprep prep: error: cannot write to --out {out}: permission denied"
        )
        assert "Errno" not in line
        _no_work(out)
    finally:
        if locked != Path("/sys"):
            os.chmod(locked, 0o755)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    line = one_line_error(fastprep("prep", demo_corpus(), "--out", str(a_file)), "prep")
    assert f"--out {a_file} is a file, not a folder" in line
    line = one_line_error(fastprep("prep", demo_corpus(), "--out", str(a_file / "sub")), "prep")
    assert f"cannot write to --out {a_file / 'sub'}" in line and "Errno" not in line


def test_vocab_out_in_a_missing_folder_fails_before_counting(tmp_path, corpus):  # noqa: F811
    target = tmp_path / "missing" / "dir" / "v.json"
    # no --quiet: one line means the counting (and its progress) never started
    line = one_line_error(fastprep("vocab", str(corpus), "--out", str(target)), "vocab")
    assert f"cannot write to --out {target}: no such folder {target.parent}" in line
    assert ".tmp" not in line
    _no_work(tmp_path / "missing")


def test_remote_source_is_one_line_without_traceback(tmp_path):
    """Remote sources are read through fsspec (tests/test_remote.py); one that
    cannot be reached, or a scheme nothing reads, is one line and no work."""
    out = tmp_path / "o"
    offline = {**os.environ, "HF_HUB_OFFLINE": "1"}
    line = one_line_error(fastprep("prep", "hf://datasets/x/y", "--out", str(out), env=offline),
                          "prep")  # fmt: skip
    assert "hf://datasets/x/y" in line or "offline" in line.lower()
    _no_work(out)
    # Online but unreachable (no network here): the store's own error, one line.
    one_line_error(fastprep("prep", "hf://datasets/x/y", "--out", str(out)), "prep")
    _no_work(out)
    line = one_line_error(fastprep("vocab", "nosuch://bucket/k", "--out", str(tmp_path / "v.json")),
                          "vocab")  # fmt: skip
    assert "no reader for nosuch:// sources" in line


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sink", "webdataset", "--image-format", "tensor"],
         "--image-format tensor is not available with --sink webdataset"),
        (["--quality", "80"], "--quality applies to --image-format jpeg or webp, not tensor"),
        (["--sink", "arrow", "--row-group-size", "10"],
         "--row-group-size applies to --sink parquet, not arrow"),
        (["--eval-radius", "10"], "--eval-radius needs --eval"),
        (["--opt-out-radius", "10"], "--opt-out-radius needs --opt-out-list"),
        (["--no-dedup", "--dedup-radius", "4"], "--dedup-radius is not available with --no-dedup"),
        (["--engine", "spark", "--threads", "2"], "--threads is not available with --engine spark"),
        (["--image-column", "img"], "--image-column applies to Parquet sources, not a folder source"),
        (["--opt-out-list", "/nonexistent/list.txt"],
         "cannot read --opt-out-list /nonexistent/list.txt: no such file"),
        (["--eval", "/nonexistent/eval"], "no such source: /nonexistent/eval"),
        (["--short-side", "256"], "--short-side applies to --store resized"),
        (["--store", "resized"], "--store resized needs --short-side and/or --max-side"),
        (["--store", "original", "--quality", "80"],
         "--quality does not apply to --store original (no re-encoding)"),
    ],
)  # fmt: skip
def test_options_that_do_not_apply_are_refused_before_any_work(tmp_path, corpus, options, message):  # noqa: F811
    out = tmp_path / "o"
    line = one_line_error(fastprep("prep", str(corpus), "--out", str(out), *options), "prep")
    assert message in line
    _no_work(out)


def test_webdataset_alone_still_writes_jpeg(tmp_path, corpus):  # noqa: F811
    """Refusing an explicit --image-format tensor keeps the default working."""
    out = tmp_path / "wds"
    proc = fastprep("prep", str(corpus), "--out", str(out), "--sink", "webdataset", "--size", "32",
                    "--quiet", "--no-report", "--quality", "80")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert list(out.glob("shard-*.tar"))


@pytest.mark.parametrize(
    ("store", "suffix"),
    [(["--store", "resized", "--short-side", "24", "--sink", "webdataset"], ".jpg"),
     (["--store", "original", "--sink", "webdataset"], None)],
)  # fmt: skip
def test_stores_from_the_command_line(tmp_path, corpus, store, suffix):  # noqa: F811
    import tarfile

    out = tmp_path / "store"
    proc = fastprep("prep", str(corpus), "--out", str(out), "--quiet", "--no-report", *store)
    assert proc.returncode == 0, proc.stderr
    names = [n for shard in out.glob("shard-*.tar") for n in tarfile.open(shard).getnames()]
    images = [n for n in names if not n.endswith((".txt", ".json"))]
    assert images, names
    if suffix:
        assert all(n.endswith(suffix) for n in images)
    else:  # originals keep each source's extension
        sources = {p.suffix.replace(".jpeg", ".jpg") for p in corpus.iterdir()
                   if p.suffix not in (".txt", ".json")}  # fmt: skip
        assert {"." + n.rsplit(".", 1)[1] for n in images} <= sources | {".png"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--quality", "0"], "argument --quality: 0 is not in the range 1<=x<=100"),
        (["--size", "-3"], "argument --size: -3 is not in the range x>=1"),
        (["--dedup-radius", "x"], "argument --dedup-radius: 'x' is not a valid integer"),
        (["--sink", "zip"], "argument --sink: 'zip' is not one of"),
        (["--no-such-flag"], "no such option '--no-such-flag'"),
    ],
)
def test_bad_values_are_one_line_usage_errors(tmp_path, corpus, options, message):  # noqa: F811
    out = tmp_path / "o"
    line = one_line_error(fastprep("prep", str(corpus), "--out", str(out), *options), "prep")
    assert message.lower() in line.lower()
    assert "(see 'fastprep prep --help')" in line
    _no_work(out)
    line = one_line_error(fastprep("prep", str(corpus)), "prep")
    assert "missing option '--out'" in line.lower()


@pytest.mark.skipif(os.name == "nt" or shutil.which("bash") is None or shutil.which("head") is None,
                    reason="needs a POSIX shell with head")  # fmt: skip
def test_closed_pipe_ends_quietly(tmp_path):
    """`fastprep demo | head -1`: head reads the first line and exits, the job
    runs on, and its summary meets a closed pipe: no message, exit 1."""
    out = tmp_path / "d"
    command = (
        f"{shlex.quote(sys.executable)} -m fastprep demo --out {shlex.quote(str(out))} "
        '--size 32 --quiet --no-report 2>{err} | head -1; echo "status=${{PIPESTATUS[0]}}"'
    ).format(err=shlex.quote(str(tmp_path / "stderr")))
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("fastprep demo: preparing the bundled sample corpus"), proc.stdout
    stderr = (tmp_path / "stderr").read_text()
    assert stderr == "", stderr
    assert lines[-1] == "status=1", proc.stdout
    assert (out / "manifest.json").exists(), "the job itself finished"
    # with no reader at all, the first line already fails: still quiet
    closed = subprocess.Popen(
        [sys.executable, "-m", "fastprep", "demo", "--out", str(tmp_path / "e"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert closed.stdout is not None and closed.stderr is not None
    closed.stdout.close()
    assert closed.stderr.read() == b""
    assert closed.wait(timeout=300) == 1


def test_debug_keeps_the_traceback(tmp_path):
    args = ("prep", "nosuch://datasets/x/y", "--out", str(tmp_path / "o"))
    plain = fastprep(*args)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    env = dict(os.environ, FASTPREP_DEBUG="1")
    debug = fastprep(*args, env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert "CommandError" in debug.stderr
    flag = subprocess.run(
        [sys.executable, "-m", "fastprep", "--debug", *args], capture_output=True, text=True
    )
    assert "Traceback" in flag.stderr


def test_shell_completion():
    script = fastprep("completion", "bash")
    assert script.returncode == 0
    assert "_FASTPREP_COMPLETE" in script.stdout and "complete " in script.stdout
    assert "compdef" in fastprep("completion", "zsh").stdout
    env = dict(os.environ, _FASTPREP_COMPLETE="bash_complete", COMP_WORDS="fastprep pr",
               COMP_CWORD="1")  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "fastprep"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert "plain,prep" in done.stdout.splitlines()
    env.update(COMP_WORDS="fastprep prep photos --si", COMP_CWORD="3")
    done = subprocess.run([sys.executable, "-m", "fastprep"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert {"plain,--sink", "plain,--size"} <= set(done.stdout.splitlines())
