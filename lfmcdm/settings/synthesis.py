"""``synthesis`` section: bulk cohort sampling, privacy filter, sharding."""

from __future__ import annotations

from lfmcdm.config_base import Section


class SynthesisConfig(Section):
    pass
