"""The command line describes itself: every option has a help string, every command an example."""
import argparse

from sceneparse.cli import build_parser


def commands(parser: argparse.ArgumentParser, prefix: str = ""):
    """(name, parser) of every leaf command, e.g. ("data verify", parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix.strip(), parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from commands(child, f"{prefix} {name}")


def test_every_option_has_help_and_every_command_an_example():
    found = list(commands(build_parser()))
    assert {name for name, _ in found} >= {"models", "weights fetch", "data verify", "data show", "data stats",
                                          "train", "evaluate", "predict", "export", "benchmark", "demo"}
    for name, parser in found:
        undocumented = [a.dest for a in parser._actions if not a.help]
        assert not undocumented, f"{name}: options without help: {undocumented}"
        assert parser.epilog and parser.epilog.startswith("example:\n  sceneparse "), name
        assert parser.format_help().rstrip().splitlines()[-1].strip().startswith("sceneparse "), name
