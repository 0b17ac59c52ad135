"""What every CLI shares: bad input is one `error:` line and exit 2, Ctrl-C is 130, never a traceback."""
from __future__ import annotations

import pytest

from sedona_runtime.cli._common import PRESETS, OneLineParser, run_main
from sedona_runtime.utils.errors import SedonaError


def _raises(exc: BaseException):
    def run(argv: list[str] | None) -> int:
        raise exc
    return run


def test_sedona_error_is_one_line_and_its_exit_code(capsys):
    assert run_main(_raises(SedonaError("config.json: steps must be positive")), []) == 2
    assert capsys.readouterr().err == "error: config.json: steps must be positive\n"


def test_interrupt_is_130_with_the_given_hint(capsys):
    assert run_main(_raises(KeyboardInterrupt()), [], "interrupted; continue with --resume") == 130
    assert capsys.readouterr().err == "interrupted; continue with --resume\n"


def test_other_exceptions_are_bugs_and_propagate():
    with pytest.raises(ZeroDivisionError):
        run_main(_raises(ZeroDivisionError()), [])


def test_parser_errors_are_sedona_errors(capsys):
    p = OneLineParser(prog="x")
    p.add_argument("--n", type=int, required=True)
    assert run_main(lambda argv: p.parse_args(argv).n, ["--n", "z"]) == 2
    err = capsys.readouterr().err
    assert err == "error: argument --n: invalid int value: 'z'\n" and "usage" not in err


def test_presets_give_stem_size_classes_and_shape():
    assert PRESETS["tiny_imagenet"].input_shape == (3, 64, 64) and PRESETS["imagenet"].num_classes == 1000
    assert {p.stem for p in PRESETS.values()} == {"cifar", "tiny_imagenet", "imagenet"}
