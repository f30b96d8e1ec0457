"""Property-based tests of the command line: any value for a numeric or device option is
either parsed into a value the command can use, or refused by argparse (exit status 2, a
message naming the option) before anything runs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kairos_gym.cli import build_parser
from tests.fuzz_helpers import fuzz

pytestmark = pytest.mark.fuzz

# option -> what a parsed value must satisfy
POSITIVE = lambda v: isinstance(v, int) and v >= 1
NON_NEGATIVE = lambda v: isinstance(v, int) and v >= 0
FINITE_NON_NEGATIVE = lambda v: isinstance(v, float) and math.isfinite(v) and v >= 0
FINITE_POSITIVE = lambda v: isinstance(v, float) and math.isfinite(v) and v > 0
COMMANDS = {
    "train": (["--config", "c.toml", "--output", "out"], {
        "--threads": POSITIVE, "--stop-after": POSITIVE,
        "--device": lambda v: v in ("auto", "cpu") or torch.cuda.is_available(),
    }),
    "collect": (["--env", "x", "--episodes", "1", "--output", "o.hdf5"], {
        "--episodes": POSITIVE, "--noise": FINITE_NON_NEGATIVE, "--seed": NON_NEGATIVE,
        "--image-size": POSITIVE, "--max-steps": POSITIVE, "--max-attempts": POSITIVE,
    }),
    "demo": ([], {
        "--seed": NON_NEGATIVE, "--steps": POSITIVE, "--scale": POSITIVE, "--threads": POSITIVE,
        "--sample-steps": lambda v: isinstance(v, int) and 1 <= v <= 50,
    }),
    "core-demo": ([], {"--steps": POSITIVE, "--seed": NON_NEGATIVE}),
    "train-policy": (["--data", "d.hdf5", "--output", "p"], {
        "--episodes": POSITIVE, "--steps": POSITIVE, "--chunk": POSITIVE,
        "--batch-size": POSITIVE, "--lr": FINITE_POSITIVE, "--seed": NON_NEGATIVE,
        "--threads": POSITIVE,
    }),
}
WORDS = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "1_000", " 3", "", "auto", "cpu",
                     "cuda", "cuda:7", "mps", "gpu", "-0", "+5"]),
    st.text(max_size=6),
)


@pytest.fixture(scope="module")
def parser():
    return build_parser()


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.filterwarnings("ignore")
def test_every_option_value_is_parsed_into_range_or_refused(parser, command, capsys):
    required, checks = COMMANDS[command]

    @given(option=st.sampled_from(sorted(checks)), word=WORDS)
    def check(option: str, word: str) -> None:
        argv = [command, *required, f"{option}={word}"]
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:
            assert exit_.code == 2
            err = capsys.readouterr().err
            assert f"argument {option}" in err, err
            return
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        assert checks[option](value), f"{argv} parsed to {value!r}"

    fuzz(40)(check)()
