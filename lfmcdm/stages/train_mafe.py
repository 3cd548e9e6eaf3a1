"""Stage ``train_mafe``: train MAFE on the label-free (ED, ES) pairs, save + register it, measure it.

Outputs ``models/mafe/`` (safetensors + config.json, registered in MLflow as ``lfmcdm-mafe``) and
``metrics/mafe.json``: validation PSNR/SSIM of the interpolated middle frame, the PSNR of the
naive average of the two inputs (the baseline to beat), and out-of-fold linear-probe R^2 of EF
from motion vectors vs from appearance features.
"""

from __future__ import annotations

from accelerate import PartialState

from lfmcdm import tracking
from lfmcdm.layout import MODELS
from lfmcdm.models.mafe import mafe_version, save_mafe
from lfmcdm.runtime import resolve_device
from lfmcdm.train.mafe import ef_probe_metrics, prepare_data, train_mafe

MODEL_ALIAS = "champion"  # what downstream stages resolve (tracking.resolve_model); MLflow reserves "latest"


def run(ctx) -> dict:
    cfg = ctx.params.mafe
    result = train_mafe(cfg, ctx.params.train, ctx.layout, ctx.params.seed, progress=ctx.progress,
                        log_metrics=tracking.log_metrics)
    if not PartialState().is_main_process:  # under `accelerate launch`, rank 0 saves, measures and registers
        return {}
    out_dir = ctx.layout.model_dir("mafe")
    save_mafe(result.model, out_dir)
    probe = ef_probe_metrics(result.model, ctx.layout, cfg, prepare_data(ctx.layout, cfg).all, ctx.params.seed,
                             resolve_device(ctx.params.train), ctx.progress)
    tracking.register_model(MODELS["mafe"].registry_name, out_dir, aliases=(MODEL_ALIAS,))
    best = result.best
    print(f"train_mafe: best epoch {best['epoch']} of {len(result.history)}, {mafe_version(out_dir)} -> {out_dir}")
    return {
        "val_psnr": best.get("val_psnr"),
        "val_psnr_average_baseline": best.get("val_psnr_average_baseline"),
        "val_ssim": best.get("val_ssim"),
        **probe,
    }
