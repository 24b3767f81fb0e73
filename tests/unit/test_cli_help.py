"""The CLI explains itself: every (sub-)command has a description and examples; --debug works anywhere."""

from __future__ import annotations

import argparse

import pytest

from sdk.cli.main import build_parser, hoist_global_flags, main


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _commands(child, (*path, name))
    return found


COMMANDS = _commands(build_parser())


@pytest.mark.parametrize("path,parser", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_a_description_and_examples(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    assert parser.description, f"sdk {' '.join(path)} has no description"
    assert parser.epilog and "example" in parser.epilog, f"sdk {' '.join(path)} has no examples"


def test_debug_is_read_anywhere_and_not_after_a_separator() -> None:
    assert hoist_global_flags(["sync", "x", "--debug"]) == ["--debug", "sync", "x"]
    assert hoist_global_flags(["search", "--", "--debug"]) == ["search", "--", "--debug"]


def test_debug_after_the_sub_command_shows_the_traceback(tmp_path) -> None:
    from sdk.core.errors import SDKError

    assert main(["encode", str(tmp_path / "missing.txt")]) == 1
    with pytest.raises(SDKError):
        main(["encode", str(tmp_path / "missing.txt"), "--debug"])


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["search"])
    assert exc.value.code == 2


@pytest.mark.parametrize("value", ["-1", "0", "x"])
def test_eval_refuses_a_non_positive_max_queries_as_a_usage_error(value: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--dataset", "d", "--max-queries", value])
    assert exc.value.code == 2


def test_the_evaluator_refuses_a_negative_max_queries() -> None:
    from sdk.core.errors import InputError
    from sdk.evaluation.beir import BeirDataset
    from sdk.evaluation.evaluators import RetrievalEvaluator

    with pytest.raises(InputError, match="max_queries"):
        RetrievalEvaluator(BeirDataset(corpus={}, queries={"q": "x"}, qrels={}), max_queries=-1)


def _complete(tmp_path, words: list[str]) -> list[str]:
    """Run the generated bash completion for ``words`` (the last one is being typed) in a real bash."""
    import shlex
    import subprocess

    from sdk.cli.completion import bash_script

    script = tmp_path / "sdk-completion.bash"
    script.write_text(bash_script(build_parser()), encoding="utf8")
    line = (f"source {shlex.quote(str(script))}; COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); "
            f"COMP_CWORD={len(words) - 1}; _sdk_complete; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    done = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, check=True)
    return [w for w in done.stdout.splitlines() if w]


def test_completion_offers_commands_sub_commands_options_and_files(tmp_path) -> None:
    offered = _complete(tmp_path, ["sdk", "sy"])
    assert "sync" in offered and all(w.startswith("sy") for w in offered)
    assert sorted(_complete(tmp_path, ["sdk", "collections", ""])) == ["describe", "drop", "list"]
    assert "--collection" in _complete(tmp_path, ["sdk", "--debug", "sync", "./notes", "--col"])
    assert "--mode" in _complete(tmp_path, ["sdk", "eval", "--"])
    (tmp_path / "corpus.jsonl").write_text("{}\n", encoding="utf8")
    assert _complete(tmp_path, ["sdk", "encode", "--calibration", "corp"]) == ["corpus.jsonl"]


def test_completion_names_are_plain_words_and_zsh_loads_bashcompinit(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from sdk.cli.completion import completion_table

    for path, entry in completion_table(build_parser()).items():
        for word in [*path.split(), *entry["commands"], *entry["options"]]:
            assert re.fullmatch(r"-{0,2}[A-Za-z0-9][A-Za-z0-9_-]*", word), word
    assert main(["completion", "zsh"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("autoload -U +X bashcompinit") and "complete -o filenames -F _sdk_complete sdk" in out


def test_ray_options_without_engine_ray_are_a_usage_error(tmp_path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sync", str(tmp_path), "--store", "memory://", "--collection", "kb", "--encoder-actors", "2"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["sync", str(tmp_path), "--store", "memory://", "--collection", "kb", "--engine", "ray",
              "--encoder-actors", "0"])
    assert exc.value.code == 2
