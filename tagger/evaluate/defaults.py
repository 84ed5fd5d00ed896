"""The evaluation protocols' defaults (`tagger.evaluate.protocols`), in a module without numpy: the
options of `tagger evaluate` read them when any command starts."""

DEFAULT_PER_LEVEL = 100
DEFAULT_SEED = 0
DEFAULT_SPLIT = "test"
DEFAULT_BATCH = 64
