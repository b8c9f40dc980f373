"""`ligand --help` and every subcommand's help document every option with its default (issue 8)."""
import os
import re
import subprocess

BIN = os.environ.get("LIGAND_BIN", ".build/debug/ligand")


def help_text(command):
    out = subprocess.run([BIN, *command, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"ligand {' '.join(command)} --help exited {out.returncode}: {out.stderr}"
    return out.stdout


def section(text, title):
    m = re.search(rf"^{title}:\n(.*?)(?=\n\n[A-Z]|\Z)", text, re.S | re.M)
    return m.group(1) if m else ""


def subcommands(text):
    # Entries are "  name   summary"; the section ends at its first blank line ("See 'ligand help ...'" follows).
    block = section(text, "SUBCOMMANDS").split("\n\n")[0]
    return [m.group(1) for m in re.finditer(r"^  ([a-z][a-z0-9-]*)(?: {2,}|$)", block, re.M) if m.group(1) != "help"]


def options(text):
    items = []
    for line in section(text, "OPTIONS").splitlines():
        if re.match(r"^  -", line):
            items.append(line)
        elif items:
            items[-1] += " " + line.strip()
    return items


def test_every_option_of_every_command_names_its_default():
    todo, seen, undocumented = [[]], [], []
    while todo:
        command = todo.pop(0)
        text = help_text(command)
        seen.append(command)
        todo += [command + [s] for s in subcommands(text)]
        for item in options(text):
            name = item.split()[0].rstrip(",")
            if name in ("-h", "--help", "--version"):
                continue
            if "default" not in item.lower():
                flat = re.sub(r"\s+", " ", item)[:120]
                undocumented.append(f"ligand {' '.join(command)}: {flat}")
    # The top level, its ten subcommands and zoo's build and list at least.
    assert len(seen) >= 13, seen
    assert not undocumented, "options without a default in their help:\n" + "\n".join(undocumented)
