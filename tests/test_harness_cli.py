"""The harness's command line (python -m clusterpool.testing): the port rule it states, --dir on
either side of the subcommand, and a stop that removes only what start made."""

from __future__ import annotations

import pytest

from clusterpool.testing.cluster import main
from clusterpool.testing.processes import free_port_run, port_range_problem

pytestmark = pytest.mark.slow


def test_a_base_port_whose_bus_ports_reach_the_ephemeral_range_is_refused_with_the_rule(tmp_path):
    data = tmp_path / "c"
    with pytest.raises(ValueError, match=r"cluster bus ports 43000-43005 \(port \+ 10000\).*ephemeral") as e:
        main(["start", "--base-port", "33000", "--dir", str(data)])
    assert "at most" in str(e.value)
    assert not data.exists()  # refused before anything was made


def test_port_range_problem_allows_the_highest_base_it_names():
    problem = port_range_problem(22763, 6, ephemeral_low=32768)
    assert problem is not None and "at most 22762" in problem
    assert port_range_problem(22762, 6, ephemeral_low=32768) is None
    assert "start at 1" in port_range_problem(0, 6, ephemeral_low=32768)


def test_dir_is_accepted_after_the_subcommand(tmp_path, capsys):
    assert main(["status", "--dir", str(tmp_path)]) == 1
    assert f"no cluster state in {tmp_path}" in capsys.readouterr().err


def test_start_help_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["start", "--help"])
    out = capsys.readouterr().out
    for option, words in (("--base-port", "bus port"), ("--primaries", "primaries"), ("--replicas", "replicas"),
                          ("--node-timeout", "cluster-node-timeout"), ("--timeout", "seconds"),
                          ("--dir", "data dir")):
        assert option in out and words in out, option


def _start_and_stop(data):
    base = free_port_run(3)
    try:
        assert main(["start", "--base-port", str(base), "--primaries", "3", "--replicas", "0",
                     "--dir", str(data)]) == 0
    finally:
        assert main(["stop", "--dir", str(data)]) == 0


def test_stop_keeps_a_directory_it_was_given(tmp_path):
    data = tmp_path / "mine"
    data.mkdir()
    _start_and_stop(data)
    assert data.is_dir() and list(data.iterdir()) == []  # its nodes and state file are gone, it stays


def test_stop_removes_a_directory_start_created(tmp_path):
    data = tmp_path / "made-by-start"
    _start_and_stop(data)
    assert not data.exists()
