"""``mafe`` section: the motion and appearance feature extractor and the motion bank."""

from __future__ import annotations

from lfmcdm.config_base import Section


class MafeConfig(Section):
    pass
