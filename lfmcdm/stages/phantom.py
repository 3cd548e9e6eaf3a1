"""Stage ``phantom``: write the phantom EchoNet dataset that the demo and the tests run on.

The stage replaces its output folder whole, so it must be sure the folder is its own: a misconfigured
``phantom.out_dir`` (``data/raw``, the folder of a real download) once replaced a real dataset. Rules:

- the output folder may not overlap ``data.echonet_root`` (neither inside the other, nor the same);
- an existing output folder is replaced only if it is empty or holds exactly what an earlier run of
  this stage wrote, as listed in its manifest (:data:`MANIFEST`); anything else is refused, untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

from lfmcdm.atomic import atomic_dir, write_text
from lfmcdm.data import phantom

#: Written last into the output folder: every path (relative, POSIX) the stage created there.
MANIFEST = ".lfmcdm-phantom.json"


class PhantomRefused(ValueError):
    """The output folder is not the phantom's to replace; the message says why and what to do."""


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def _contents(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def check_out_dir(out: Path, echonet_root: Path | None) -> None:
    """Refuse (:class:`PhantomRefused`) unless replacing ``out`` can only remove the phantom's own files."""
    if echonet_root is not None and _overlaps(out, echonet_root):
        raise PhantomRefused(f"phantom.out_dir {out} overlaps data.echonet_root {echonet_root}: the phantom stage "
                             f"replaces its output folder whole; give it a folder of its own")
    if out.is_symlink():
        raise PhantomRefused(f"phantom.out_dir {out} is a symlink; refusing to replace what it points to")
    if not out.exists():
        return
    if not out.is_dir():
        raise PhantomRefused(f"phantom.out_dir {out} exists and is not a folder; refusing to replace it")
    present = _contents(out)
    if not present:
        return
    try:
        made = set(json.loads((out / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        made = set()
    foreign = sorted(present - made - {MANIFEST})
    if foreign:
        raise PhantomRefused(f"phantom.out_dir {out} holds {len(foreign)} file(s) the phantom stage did not create "
                             f"(e.g. {foreign[0]}); refusing to replace it: move them away or choose another out_dir")


def _write_manifest(folder: Path) -> None:
    write_text(folder / MANIFEST, json.dumps({"files": sorted(_contents(folder))}, indent=1) + "\n")


def run(ctx) -> dict:
    cfg = ctx.params.phantom
    out = ctx.root / cfg.out_dir
    configured = ctx.params.data.echonet_root
    check_out_dir(out, ctx.root / configured if configured else None)
    with atomic_dir(out) as tmp:
        if configured:
            # Real data configured: leave a note instead of spending minutes on an unused phantom.
            write_text(tmp / "README.txt", f"phantom not generated: data.echonet_root = {configured}\n")
        else:
            phantom.write_dataset(cfg, tmp, seed=ctx.params.seed, progress=ctx.progress)
        _write_manifest(tmp)
    return {}
