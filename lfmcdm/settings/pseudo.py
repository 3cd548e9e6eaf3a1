"""``pseudo`` section: label-free cardiac phase, pseudo optical flow, self-supervised ReID."""

from __future__ import annotations

from lfmcdm.config_base import Section


class PseudoConfig(Section):
    pass
