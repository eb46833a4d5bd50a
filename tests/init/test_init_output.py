"""Service output reaches the container's stdout/stderr, line by line, prefixed."""

import re

from init_harness import InitRunner

MAX_LINE = 65536


def test_stdout_and_stderr_are_prefixed_per_line(init: InitRunner) -> None:
    talk = init.stub(
        "talk",
        "--stdout",
        "out one\\nout two\\npartial out",
        "--stderr",
        "err one\\npartial err",
        "--exit-after",
        0,
    )
    init.write_config(
        [
            {"name": "talk", "type": "oneshot", "command": talk},
            init.service("web", "--stdout", "listening\\n", stop_timeout=2.0),
        ]
    )
    init.start()
    init.wait_running()
    init.wait_for(lambda: "web | listening" in init.stdout, "web's output")
    code, _ = init.stop()
    assert code == 0
    # A one-shot's trailing partial line is flushed when its pipe closes,
    # before the next service starts.
    assert init.stdout.splitlines() == [
        "talk | out one",
        "talk | out two",
        "talk | partial out",
        "web | listening",
    ]
    stderr = init.stderr.splitlines()
    assert [line for line in stderr if line.startswith("talk | ")] == [
        "talk | err one",
        "talk | partial err",
    ]
    assert all(line.startswith(("shipyard-init | ", "talk | ")) for line in stderr), stderr
    assert any(line.startswith("shipyard-init | ") for line in stderr)


def test_chatty_services_keep_lines_whole_and_still_stop_fast(init: InitRunner) -> None:
    init.write_config(
        [
            init.service("aa", "--chatty", 3000, stop_timeout=2.0),
            init.service("bb", "--chatty", 5000, stop_timeout=2.0),
        ]
    )
    init.start()
    init.wait_running()
    # Both must be well into their output, however the machine's load shares
    # the time between them: a size alone was once reached with bb 42 lines in.
    init.wait_for(
        lambda: (
            init.stdout_path.stat().st_size > 8_000_000
            and all(init.stdout.count(f"\n{name} | ") > 200 for name in ("aa", "bb"))
        ),
        "8 MB of output, and 200 lines from each service",
        timeout=20.0,
    )
    code, elapsed = init.stop()
    assert code == 0
    # Their output does not hold up the stop: neither waits out its stop_timeout.
    assert elapsed < 2.0, init.diagnostics()

    shape = {"aa": re.compile(r"(a{3000}) (\d+)"), "bb": re.compile(r"(b{5000}) (\d+)")}
    last = {"aa": [], "bb": []}
    lines = init.stdout.splitlines()
    for index, line in enumerate(lines):
        name, sep, body = line.partition(" | ")
        assert sep and name in shape, f"line {index} is not prefixed: {line[:80]!r}"
        match = shape[name].fullmatch(body)
        if match is None:
            # Only a service's very last line may be cut short, by the stop
            # signal arriving in the middle of its write().
            assert not any(x.startswith(f"{name} | ") for x in lines[index + 1 :]), line[:80]
            continue
        last[name].append(int(match.group(2)))
    for name, counters in last.items():
        assert len(counters) > 100, name
        assert counters == list(range(len(counters))), f"{name} lost or reordered lines"


def test_overlong_line_is_split_without_losing_bytes(init: InitRunner) -> None:
    size = 3 * MAX_LINE + 123
    script = f"import sys; sys.stdout.write('x' * {size} + '\\nend\\n')"
    init.write_config(
        [{"name": "long", "type": "oneshot", "command": ["/usr/bin/python3", "-c", script]}]
    )
    assert init.run_to_exit() == 0
    lines = init.stdout.splitlines()
    assert all(line.startswith("long | ") for line in lines)
    bodies = [line.removeprefix("long | ") for line in lines]
    assert bodies[-1] == "end"
    assert "".join(bodies[:-1]) == "x" * size
    assert len(bodies) > 2
    assert all(len(body) < 2 * MAX_LINE for body in bodies)
