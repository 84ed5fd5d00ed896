"""Constants shared by training and inference (the model manifest records them).

One place for the signal geometry, so the renderer, the feature extractor, the trainer and the
scanner can never disagree. Loading a model refuses a manifest whose values differ.
"""

SAMPLE_RATE = 16_000
"""Analysis sample rate in Hz (NSynth's)."""

WINDOW_SECONDS = 4.0
WINDOW_SAMPLES = 64_000
"""One NSynth-length analysis window: 4 s at 16 kHz."""

N_FFT = 2048
HOP_LENGTH = 512
STFT_BINS = N_FFT // 2 + 1
"""The paper's STFT front end: 1025 frequency bins."""

STFT_FRAMES = 1 + WINDOW_SAMPLES // HOP_LENGTH
"""126 frames per 4 s window (centred frames)."""

N_MELS = 128
"""Default number of mel bands for the log-mel front end."""

TOP_DB = 80.0
"""Dynamic range kept below the reference (0 dBFS) in dB features."""

SILENCE_DBFS = -60.0
"""Windows whose RMS is below this level (dB relative to full scale) are marked silent."""

QUIET_RANGE_DB = 40.0
"""A track whose every window is below `SILENCE_DBFS` (a transfer made at too low a gain) is heard
as if raised to put its loudest window at -20 dBFS: its windows within this many dB of that one
are analysed (`SILENCE_DBFS` + 20 dB)."""

QUIET_FLOOR_DBFS = -80.0
"""...but never a window below this level: the hiss and dither of a silent track (16-bit dither is
about -92 dBFS), which stays silence."""

RENDER_SAMPLE_RATE = 48_000
"""SoundFonts are rendered at 48 kHz, then resampled to 16 kHz (direct 16 kHz aliases)."""

GATE_COST = 0.15
"""Default share of validation windows holding a family that the presence gate may turn down
(`tagger.model.gate`; chosen on held-out instruments with ``scripts/held_out_detail.py --report
--gate-costs``: the README's "Presence gate" lever). Here, not in the gate's module, so that
`tagger train`'s option reads it without importing numpy into every command's start-up."""
