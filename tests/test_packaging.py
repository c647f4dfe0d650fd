"""What the installed distribution carries (scripts/test.sh runs this on
the release wheel it built): licence file and SPDX expression, authors,
URLs and classifiers, the CLI's dependencies, the report's templates and
static files, and a stripped extension."""

from __future__ import annotations

import sys
from importlib import metadata, resources
from pathlib import Path

import fastprep
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))


def test_licence_and_project_metadata():
    meta = metadata.metadata("fastprep")
    assert meta["License-Expression"] == "Apache-2.0"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    assert meta["Author"] or meta["Author-email"]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Repository", "Issues"} <= set(urls)
    classifiers = meta.get_all("Classifier") or []
    assert len(classifiers) >= 10
    assert "Programming Language :: Python :: 3.9" in classifiers
    assert "Typing :: Typed" in classifiers
    requires = " ".join(meta.get_all("Requires-Dist") or [])
    for name in ("click", "rich", "jinja2", "numpy", "pyarrow"):
        assert name in requires.lower(), name


def test_licence_file_is_installed_with_the_full_text():
    dist = metadata.distribution("fastprep")
    files = [f for f in dist.files or [] if f.name == "LICENSE" and ".dist-info" in str(f)]
    assert files, "LICENSE in the wheel's .dist-info"
    text = files[0].read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_report_templates_and_static_files_are_installed():
    report = resources.files("fastprep.pipeline.report")
    for name in ("page.html.j2", "records.html.j2", "provenance.html.j2", "damaged.html.j2"):
        assert "<" in report.joinpath("templates", name).read_text(encoding="utf-8"), name
    assert report.joinpath("static", "report.css").read_text(encoding="utf-8")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF section check")
def test_extension_is_stripped():
    from check_wheel import elf_section_names

    core = Path(fastprep._core.__file__)
    sections = elf_section_names(core.read_bytes())
    assert ".text" in sections, "parsed the ELF section table"
    assert ".symtab" not in sections, f"{core} is not stripped"
