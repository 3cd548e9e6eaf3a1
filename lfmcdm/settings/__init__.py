"""Config sections of the model stages, one module each (composed into ``Params`` in lfmcdm/config.py)."""
