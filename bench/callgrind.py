"""Read valgrind ``callgrind`` output: instructions executed per shared object (self cost, no inclusive sums).

Usage: ``callgrind.py FILE [FILE ...]`` prints ``Ir  object`` lines, most first.  bench/run.py's breakdown phase
uses :func:`by_object` on the dumps it takes between handshake batches.

The format (valgrind's "Callgrind Format Specification"): ``ob=`` names the object of the current function
(``(id) name`` the first time, ``(id)`` after that), ``fl=``/``fn=`` its file and function; a line starting with
a digit, ``+``, ``-`` or ``*`` is a cost line (position, then one number per event).  A cost line that follows
``calls=`` is the *inclusive* cost of that call, already counted as self cost in the callee, so it is skipped.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TypeAlias

_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")
_COST_START = tuple("0123456789+-*")


def _name(table: dict[str, str], value: str) -> str:
    """A (possibly compressed) name: ``(3) /lib/libc.so.6`` defines id 3, ``(3)`` refers to it."""
    match = _NAMED.match(value.strip())
    if match is None:
        return value.strip()
    ident, name = match.groups()
    if name is not None:
        table[ident] = name
        return name
    return table.get(ident, f"({ident})")


Cost: TypeAlias = Counter[tuple[str, str, str]]
"""Self cost by (object file, source file, function)."""


def by_object_file(lines: Iterable[str], event: str = "Ir") -> Cost:
    """Self cost of ``event`` per (object file, source file, function), from one callgrind output file's text.

    The source file is ``???`` for code without debug information; ``fi=``/``fe=`` (inlined code) count for the
    file they name.
    """
    objects: dict[str, str] = {}
    files: dict[str, str] = {}
    functions: dict[str, str] = {}
    totals: Cost = Counter()
    column = 0
    current = "?"
    function = "???"
    function_file = source = "???"
    skip_next = False
    for raw in lines:
        line = raw.rstrip("\n")
        if not line:
            continue
        if line.startswith(_COST_START):
            if skip_next:
                skip_next = False
                continue
            fields = line.split()
            if len(fields) > column + 1:
                totals[current, source, function] += int(fields[column + 1])
            continue
        key, sep, value = line.partition("=")
        if sep:
            if key == "ob":
                current = _name(objects, value)
            elif key == "fl":
                function_file = source = _name(files, value)
            elif key in ("fi", "fe"):
                source = _name(files, value)
            elif key == "fn":
                source = function_file
                function = _name(functions, value)
            elif key == "cfn":
                _name(functions, value)
            elif key == "cob":
                _name(objects, value)  # defines the id for later references
            elif key in ("cfi", "cfl"):
                _name(files, value)
            elif key == "calls":
                skip_next = True
            continue
        if line.startswith("events:"):
            names = line.split(":", 1)[1].split()
            column = names.index(event) if event in names else 0
    return totals


def by_object(lines: Iterable[str], event: str = "Ir") -> Counter[str]:
    """Self cost of ``event`` per object file (full path)."""
    totals: Counter[str] = Counter()
    for (obj, _file, _function), cost in by_object_file(lines, event).items():
        totals[obj] += cost
    return totals


def read(path: Path, event: str = "Ir") -> Cost:
    """:func:`by_object_file` of one output file."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        return by_object_file(fh, event)


def main(argv: list[str]) -> int:
    total: Counter[str] = Counter()
    for name in argv:
        for (obj, _file, _function), cost in read(Path(name)).items():
            total[obj] += cost
    for obj, cost in total.most_common():
        print(f"{cost:>15,}  {obj}")
    print(f"{sum(total.values()):>15,}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
