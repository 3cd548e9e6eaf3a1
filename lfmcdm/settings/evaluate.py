"""``evaluate`` section: metrics and the HTML report."""

from __future__ import annotations

from lfmcdm.config_base import Section


class EvaluateConfig(Section):
    pass
