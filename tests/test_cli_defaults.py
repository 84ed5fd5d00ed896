"""A command's option defaults are the library's: each default is written once, in the library
(STYLE.md: "defaults written twice (CLI and library)"), and the options read it (`tagger.cli.
options.default`). Every option of a command is compared with the library default of its name (or
of the name it is passed on as); an option of the command's own (a None that means "the library
decides", a required path) is listed with what it stands for, so that a new option is one or the
other."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import typer.models


def _options(command) -> dict[str, object]:
    """A typer command's options and arguments: parameter name -> default (``...``: required)."""
    return {name: p.default.default for name, p in inspect.signature(command).parameters.items()
            if isinstance(p.default, typer.models.ParameterInfo)}  # fmt: skip


def _fields(settings) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(settings)}


def _keywords(function) -> dict[str, object]:
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


def _check(cli: dict, library: dict, *, passed_as: dict[str, str] = {}, own: set[str] = frozenset()) -> None:
    """Each option of ``cli`` (name -> default) but the required ones and ``own`` has the default of
    ``library`` (name -> default) under its name, or under the name it is passed on as
    (``passed_as``)."""
    unknown = {n for n in cli if cli[n] is not ... and n not in own and passed_as.get(n, n) not in library}
    assert not unknown, f"options with neither a library default nor a place in `own`: {sorted(unknown)}"
    assert not (own - set(cli)), f"`own` names options the command lacks: {sorted(own - set(cli))}"
    compared = [n for n in cli if cli[n] is not ... and n not in own]
    assert {n: cli[n] for n in compared} == {n: library[passed_as.get(n, n)] for n in compared}
    assert all(type(cli[n]) is type(library[passed_as.get(n, n)]) for n in compared)  # (4 is not 4.0 in --help)


def test_the_check_finds_a_default_written_twice_that_differs():
    def command(epochs: int = typer.Option(5), seed: int = typer.Option(0), data: str = typer.Option(...)):
        pass

    with pytest.raises(AssertionError):
        _check(_options(command), {"epochs": 4, "seed": 0})
    with pytest.raises(AssertionError, match="neither"):
        _check(_options(command), {"epochs": 5})
    _check(_options(command), {"epochs": 5, "seed": 0})


def test_train_options_are_the_training_settings_defaults():
    from tagger.cli.train import train
    from tagger.model.synth import SynthSettings
    from tagger.model.train import TrainSettings, train_ensemble

    settings = _fields(TrainSettings)
    assert settings["valid_music_examples"] == settings["valid_solo_notes"]  # (one option sets both)
    assert settings["threshold_resamples"] == 0  # --one-se-thresholds off
    assert _fields(SynthSettings)["recipe"] == settings["recipe"]
    _check(
        _options(train), {**_fields(SynthSettings), **settings, **_keywords(train_ensemble)},
        passed_as={"valid_examples": "valid_music_examples", "family": "families"},
        own={
            "out",  # the models folder of the current one ("models"): the library takes no default
            "architecture",  # None: the architecture of the models in --out, else TrainSettings' (the check below)
            "level_weights",  # None: the recipe's (SynthSettings')
            "trunk_filters",  # None: TrainSettings' (--help names them: the check below)
            "leave_out",  # None: none left out
            "one_se_thresholds",  # off: TrainSettings.threshold_resamples 0
        },
    )  # fmt: skip
    from tagger.cli.train import _architecture

    assert _architecture(None, Path("/nonexistent")) == settings["architecture"]
    help_ = inspect.signature(train).parameters["trunk_filters"].default.help
    assert f"(default {','.join(map(str, settings['trunk_filters']))})" in help_


def test_scan_options_are_the_scan_defaults():
    from tagger.cli.scan import scan
    from tagger.library.distributed import BACKENDS
    from tagger.library.scan import DEFAULT_FILE_TIMEOUT, tag_writer
    from tagger.library.scan import scan as run_scan
    from tagger.paths import DEFAULT_SETTLE_SECONDS

    library = {**_keywords(tag_writer), **_keywords(run_scan)}
    assert library["settle_seconds"] == 0.0 and BACKENDS[0] == "local"
    _check(
        _options(scan), library,
        own={
            "db",  # None: $TAGGER_DB, else the user's library
            "models",  # None: $TAGGER_MODELS, else the shipped models
            "file_timeout",  # None: scan's DEFAULT_FILE_TIMEOUT (the check below)
            "write_tags",  # on: tag_writer is scan's on_track
            "settle_seconds",  # the commands' DEFAULT_SETTLE_SECONDS; scan and tag_writer's 0.0 is for library callers
            "as_json", "backend", "scheduler",  # output; local processes (scan's backend None)
        },
    )  # fmt: skip
    assert _options(scan)["settle_seconds"] == DEFAULT_SETTLE_SECONDS
    assert f"(default {DEFAULT_FILE_TIMEOUT:g};" in inspect.signature(scan).parameters["file_timeout"].default.help


def test_predict_and_evaluate_options_are_their_functions_defaults():
    from tagger.cli.evaluate import evaluate
    from tagger.cli.predict import predict
    from tagger.evaluate.report import evaluate as run_evaluate
    from tagger.library.assemble import analyse_track

    _check(_options(predict), _keywords(analyse_track), passed_as={"hop": "hop_seconds"},
           own={"models", "as_json", "plot"})  # fmt: skip
    assert _keywords(run_evaluate)["solo"] is True  # --no-solo off
    _check(_options(evaluate), _keywords(run_evaluate), own={"models", "no_solo"})


def test_dataset_options_are_the_renderers_and_mixers_defaults():
    from tagger.cli.dataset import mix, render, split
    from tagger.data import mix as M
    from tagger.data.gm import all_programs
    from tagger.data.nsynth import split_dataset
    from tagger.data.render import render_dataset
    from tagger.data.stk import render_stk

    stk = _keywords(render_stk)
    library = {**_keywords(all_programs), **_keywords(render_dataset), "split_seed": _keywords(split_dataset)["seed"],
               "stk_variants": stk["variants"], "stk_notes": stk["notes_per_variant"],
               "velocities": ",".join(map(str, _keywords(render_dataset)["velocities"]))}  # fmt: skip
    _check(_options(render), library, own={
        "soundfont", "soundfonts",  # every installed training SoundFont
        "stk", "salamander", "no_salamander", "sample_negatives",  # None: on when installed
    })  # fmt: skip
    _check(_options(split), _keywords(split_dataset))
    mixing = _fields(M.MixSettings)
    mixer = {**_keywords(M.write_mixtures), "max_onset": mixing["max_onset_seconds"],
             "gain_db": "-6,0" if mixing["gain_db"] == (-6.0, 0.0) else mixing["gain_db"],
             "pitch_range": ",".join(map(str, mixing["pitch_range"]))}  # fmt: skip
    assert mixing["velocities"] is None and mixer["levels"] is None and _keywords(M.draw_mixtures)["per_level"] == mixer["per_level"]
    _check(_options(mix), mixer, own={
        "split_name",  # the test split
        "levels",  # every level: 0 to the number of families
        "velocities",  # "": any (MixSettings' None)
        "acoustic_only",  # every source
    })  # fmt: skip
