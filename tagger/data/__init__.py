"""Note datasets: the NSynth-format reader, the SoundFont renderer, splits and the polyphonic mixer."""
