"""Shell completion: ``unitsync --install-completion --shell SHELL`` (cyclopts' own command)
writes a script each shell accepts and that completes our commands and options; bash and zsh
get the line in their rc file that loads it. Each shell is run for real (zsh and fish where
installed: .ci/run installs them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from .cli_support import OK, UNITSYNC, env_for, have
from .waits import WAIT

#: Where cyclopts puts each script under $HOME, and the rc file that loads it (fish: none).
WHERE = {
    "bash": (".local/share/bash-completion/completions/unitsync", ".bashrc"),
    "zsh": (".zsh/completions/_cyclopts_unitsync", ".zshrc"),
    "fish": (".config/fish/completions/unitsync.fish", None),
}


async def install(shell: str, home: Path) -> Path:
    """Run the README's command for ``shell`` with ``home`` as $HOME; the script it wrote."""
    env = {**env_for(Path("/nonexistent/unitsync.sock")), "HOME": str(home)}
    for variable in ("ZSH", "ZSH_CUSTOM"):  # no oh-my-zsh: the plain zsh layout
        env.pop(variable, None)
    with trio.fail_after(WAIT * 2):
        done = await trio.run_process(
            UNITSYNC + ["--install-completion", "--shell", shell], env=env,
            capture_stdout=True, capture_stderr=True, check=False,
        )
    assert done.returncode == OK, done
    script_at, rc = WHERE[shell]
    script = home / script_at
    assert f"installed to {script}" in done.stdout.decode(), done.stdout
    text = script.read_text()
    for word in ("serve", "critical-chain", "socket", "requires", "no-state"):  # fish: -l NAME
        assert word in text, (shell, word)
    if rc is not None:
        assert str(script.parent) in (home / rc).read_text()
    return script


def shell_says(argv: list[str], home: Path) -> str:
    """Run a shell command line (bounded); its stdout, after asserting it exited 0."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT * 2, check=False,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done
    return done.stdout


async def test_bash_completion_registers_and_completes(tmp_path: Path) -> None:
    script = await install("bash", tmp_path)
    said = shell_says(["bash", "-c", f"""
        source {script}
        complete -p unitsync
        COMP_WORDS=(unitsync se); COMP_CWORD=1; _unitsync; echo "commands: ${{COMPREPLY[*]}}"
        COMP_WORDS=(unitsync want --req); COMP_CWORD=2; _unitsync; echo "options: ${{COMPREPLY[*]}}"
    """], tmp_path)
    assert said.splitlines() == [
        "complete -F _unitsync unitsync", "commands: serve", "options: --requires"
    ], said


async def test_zsh_completion_is_found_by_compinit(tmp_path: Path) -> None:
    if not have("zsh"):
        pytest.skip("zsh is not installed (.ci/run installs it)")
    script = await install("zsh", tmp_path)
    assert shell_says(["zsh", "-n", str(script)], tmp_path) == ""  # it parses
    said = shell_says(["zsh", "-fc", f"""
        fpath=({script.parent} $fpath); autoload -Uz compinit; compinit -u -d {tmp_path}/zcd
        print -r -- $_comps[unitsync]
    """], tmp_path)
    assert said == f"{script.name}\n", said


async def test_fish_completion_completes(tmp_path: Path) -> None:
    if not have("fish"):
        pytest.skip("fish is not installed (.ci/run installs it)")
    script = await install("fish", tmp_path)
    line = f"source {script}; complete -C 'unitsync se'; complete -C 'unitsync want --req'"
    said = shell_says(["fish", "--no-config", "-c", line], tmp_path)
    assert [line.split("\t")[0] for line in said.splitlines()] == ["serve", "--requires"], said
