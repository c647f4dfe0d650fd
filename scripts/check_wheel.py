"""Checks a built fastprep wheel before it is tested or published.

* The licence is inside (``*.dist-info/licenses/LICENSE``, PEP 639).
* The extension is stripped (ELF: no ``.symtab`` section).
* Linux: the platform tag in the file name is the one ``auditwheel show``
  finds the wheel consistent with (so a wheel linked against a newer glibc
  cannot be published as manylinux_2_28), and it is the expected
  ``--manylinux`` policy.

Usage: ``python scripts/check_wheel.py dist/fastprep-*.whl [--manylinux 2_28]``.
Exit status 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import re
import struct
import subprocess
import sys
import zipfile


def elf_section_names(data: bytes) -> list[str]:
    """Section names of an ELF file (32/64-bit, either byte order)."""
    if data[:4] != b"\x7fELF":
        return []
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        shoff = struct.unpack_from(endian + "Q", data, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x3A)
        name_at, offset_at, fmt = 0, 0x18, "Q"
    else:
        shoff = struct.unpack_from(endian + "I", data, 0x20)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x2E)
        name_at, offset_at, fmt = 0, 0x10, "I"
    headers = [data[shoff + i * shentsize : shoff + (i + 1) * shentsize] for i in range(shnum)]
    strtab = headers[shstrndx]
    str_offset = struct.unpack_from(endian + fmt, strtab, offset_at)[0]
    names = []
    for header in headers:
        start = str_offset + struct.unpack_from(endian + "I", header, name_at)[0]
        names.append(data[start : data.index(b"\0", start)].decode("ascii", "replace"))
    return names


def check(path: str, manylinux: str | None) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        if not any(re.search(r"\.dist-info/licenses/LICENSE$", n) for n in names):
            problems.append(f"{path}: no .dist-info/licenses/LICENSE")
        for name in names:
            if re.search(r"_core[^/]*\.so$", name):
                sections = elf_section_names(wheel.read(name))
                if ".symtab" in sections:
                    problems.append(f"{path}: {name} is not stripped (.symtab present)")
    platform = path.rsplit("-", 1)[-1].removesuffix(".whl")
    if "linux" in platform:
        shown = subprocess.run(
            [sys.executable, "-m", "auditwheel", "show", path],
            capture_output=True,
            text=True,
            check=False,
        )
        text = " ".join(shown.stdout.split())
        found = re.search(r'consistent with the following platform tag: "([^"]+)"', text)
        if shown.returncode != 0 or found is None:
            problems.append(f"{path}: auditwheel show failed: {text or shown.stderr.strip()}")
        elif found.group(1) not in platform.split("."):
            problems.append(
                f"{path}: tagged {platform} but auditwheel finds it consistent with "
                f"{found.group(1)}"
            )
        if manylinux and f"manylinux_{manylinux}_" not in platform:
            problems.append(f"{path}: expected a manylinux_{manylinux} wheel, got {platform}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="+")
    parser.add_argument("--manylinux", help="expected policy, e.g. 2_28")
    args = parser.parse_args(argv)
    problems = [p for wheel in args.wheels for p in check(wheel, args.manylinux)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"check_wheel: {len(args.wheels)} wheel(s) OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
