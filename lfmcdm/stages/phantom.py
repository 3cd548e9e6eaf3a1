"""Stage ``phantom``: write the phantom EchoNet dataset that the demo and the tests run on."""

from __future__ import annotations

from lfmcdm.atomic import atomic_dir, write_text
from lfmcdm.data import phantom


def run(ctx) -> dict:
    cfg = ctx.params.phantom
    out = ctx.root / cfg.out_dir
    if ctx.params.data.echonet_root:
        # Real data configured: leave a note instead of spending minutes on an unused phantom.
        with atomic_dir(out) as tmp:
            write_text(tmp / "README.txt", f"phantom not generated: data.echonet_root = {ctx.params.data.echonet_root}\n")
        return {}
    with atomic_dir(out) as tmp:
        phantom.write_dataset(cfg, tmp, seed=ctx.params.seed, progress=ctx.progress)
    return {}
