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


def test_out_of_memory_is_one_line_and_other_errors_still_raise(monkeypatch, capsys):
    import pytest

    from sceneparse.cli import main, predict

    def allocation_fails(args):  # the text torch's CPU allocator raises (here for --resize 200000x200000)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 480000000000 bytes. Error code 12 (Cannot allocate memory)")

    def python_runs_out(args):
        raise MemoryError()

    monkeypatch.setattr(predict, "run", allocation_fails)
    assert main(["predict"]) == 2
    assert capsys.readouterr().err == ("sceneparse: error: out of memory (480.0 GB asked): use a smaller "
                                       "--batch-size, --max-size, --resize, --scales or --size\n")
    monkeypatch.setattr(predict, "run", python_runs_out)
    assert main(["predict"]) == 2
    assert capsys.readouterr().err.startswith("sceneparse: error: out of memory: use a smaller --batch-size")
    for bug in (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), IndexError("list index out of range")):
        monkeypatch.setattr(predict, "run", lambda args: (_ for _ in ()).throw(bug))
        with pytest.raises(type(bug)):  # a bug is not dressed up as a one-line error
            main(["predict"])
