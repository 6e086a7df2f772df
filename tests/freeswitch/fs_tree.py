"""Read freeswitch/ the way FreeSWITCH 1.10 does, so tests can check the tree without FreeSWITCH.

FreeSWITCH assembles its configuration with a line-based preprocessor (switch_xml.c,
``preprocess``): on every line it first replaces each ``$${name}`` with the global variable
``name`` (empty when undefined), drops lines holding ``<include>``, ``</include>`` or ``<?``, and
runs a line's ``X-PRE-PROCESS`` command (``set``, ``env-set``, ``include`` of a glob relative to
the including file's directory) instead of copying it. ``assemble`` does the same and records
every reference to an undefined variable. ``run_dialplan`` evaluates one XML dialplan context
the way mod_dialplan_xml's hunt does for the constructs the tree uses (condition chains,
anti-actions, ``continue``; fields expanded with channel variables, globals and the api
functions ``cond`` and ``strmicroepoch`` at a given clock), so tests can say which
applications a call would run.
"""

from __future__ import annotations

import glob
import operator
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from support.freeswitch import CONF_DIR

__all__ = [
    "BUILTIN_VARIABLES",
    "CONF_DIR",
    "SITE_ENV",
    "Assembly",
    "assemble",
    "run_dialplan",
]


# Variables FreeSWITCH computes before reading vars.xml (values are stand-ins for tests).
BUILTIN_VARIABLES = {
    "local_ip_v4": "192.0.2.1",
    "certs_dir": "/etc/freeswitch/tls",
    "conf_dir": "/etc/freeswitch",
    "log_dir": "/var/log/freeswitch",
}

# A site as an operator would configure it (documentation addresses, RFC 5737).
SITE_ENV = {
    "IVAGATE_FS_SIP_IP": "192.0.2.10",
    "IVAGATE_FS_EDGE_CIDRS": "198.51.100.0/24,203.0.113.7/32",
    "IVAGATE_FS_ESL_PASSWORD": "s3cret-for-tests",
}

_VAR = re.compile(r"\$\$\{([^}]*)\}")
_PRE = re.compile(r'<X-PRE-PROCESS\s+cmd="([^"]*)"\s+data="([^"]*)"\s*/>', re.IGNORECASE)


@dataclass
class Assembly:
    """The assembled document and what the preprocessor saw on the way."""

    text: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    undefined: list[str] = field(default_factory=list)  # "file:line name" for each bad reference
    files: list[Path] = field(default_factory=list)

    @property
    def root(self) -> etree._Element:
        return etree.fromstring(self.text.encode())

    def configuration(self, name: str) -> etree._Element:
        found = self.root.xpath(f"section[@name='configuration']/configuration[@name='{name}']")
        assert found, f"no configuration {name!r} in the assembled tree"
        element: etree._Element = found[0]
        return element

    def params(self, element: etree._Element) -> dict[str, str]:
        return {p.get("name"): p.get("value") for p in element.iter("param")}


def assemble(env: Mapping[str, str], conf_dir: Path = CONF_DIR) -> Assembly:
    """Preprocess ``conf_dir/freeswitch.xml`` with ``env`` as the process environment."""
    out = Assembly(variables=dict(BUILTIN_VARIABLES))
    chunks: list[str] = []
    _preprocess(conf_dir / "freeswitch.xml", env, out, chunks)
    out.text = "".join(chunks)
    return out


def _preprocess(path: Path, env: Mapping[str, str], out: Assembly, chunks: list[str]) -> None:
    out.files.append(path)
    for number, raw in enumerate(path.read_text().splitlines(keepends=True), 1):

        def expand(match: re.Match[str], where: str = f"{path.name}:{number}") -> str:
            name = match.group(1)
            if name not in out.variables:
                out.undefined.append(f"{where} {name}")
            return out.variables.get(name, "")

        line = _VAR.sub(expand, raw)
        if "<include>" in line or "</include>" in line or "<?" in line:
            continue
        command = _PRE.search(line)
        if command is None:
            assert "X-PRE-PROCESS" not in line.upper(), f"{path}:{number}: unparsed {line!r}"
            chunks.append(line)
            continue
        cmd, data = command.groups()
        name, _, value = data.partition("=")
        if cmd == "set":
            out.variables[name.strip()] = value.strip()
        elif cmd == "env-set":
            assert value.startswith("$"), f"{path}:{number}: env-set wants name=$ENV"
            if value[1:] in env:
                out.variables[name] = env[value[1:]]
        elif cmd == "include":
            for included in sorted(glob.glob(str(path.parent / data))):
                _preprocess(Path(included), env, out, chunks)
        else:
            raise AssertionError(f"{path}:{number}: preprocessor command {cmd!r} not modelled")


_INNERMOST = re.compile(r"\$\{([^${}]*)\}")  # a ${...} holding no other
_API_CALL = re.compile(r"^(\w+)\((.*)\)$", re.DOTALL)
# cond (mod_commands): "A OP B ?yes:no", numbers compared as numbers, other words by length
_COND = re.compile(r"^(\S*) (==|!=|>=|<=|>|<) (\S+) \?([^:]*):(.*)$")
_OPERATORS = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def _cond(argument: str) -> str:
    parsed = _COND.match(argument)
    if parsed is None:
        return "-ERR"
    a, op, b, yes, no = parsed.groups()

    def number(word: str) -> float:
        return float(word) if re.fullmatch(r"[-+]?[0-9.]+", word) else float(len(word))

    return yes if _OPERATORS[op](number(a), number(b)) else no


def _expand(text: str, lookup: Mapping[str, str], now: float) -> str:
    """``text`` with every ``${...}`` replaced, innermost first, as FreeSWITCH expands."""

    def one(match: re.Match[str]) -> str:
        inner = match.group(1)
        call = _API_CALL.match(inner)
        if call is None:
            return lookup.get(inner, "")
        name, argument = call.groups()
        if name == "strmicroepoch" and not argument:
            return str(round(now * 1_000_000))
        if name == "cond":
            return _cond(argument)
        raise AssertionError(f"api function {name!r} not modelled")

    while _INNERMOST.search(text):
        text = _INNERMOST.sub(one, text)
    return text


def run_dialplan(
    assembly: Assembly, context: str, channel: Mapping[str, str], now: float | None = None
) -> list[tuple[str, str]]:
    """The (application, data) pairs a call with these channel variables would execute
    when FreeSWITCH's clock reads ``now`` (default: this host's)."""
    found = assembly.root.xpath(f"section[@name='dialplan']/context[@name='{context}']")
    assert found, f"no dialplan context {context!r}"
    lookup = {**assembly.variables, **channel}  # channel variables fall back to globals
    clock = time.time() if now is None else now
    executed: list[tuple[str, str]] = []
    for extension in found[0].iter("extension"):
        matched = True
        for condition in extension.iter("condition"):
            value = _expand(condition.get("field", ""), lookup, clock)
            matched = re.search(condition.get("expression", ""), value)
            tag = "action" if matched else "anti-action"
            executed += [(a.get("application"), a.get("data", "")) for a in condition.iter(tag)]
            if not matched:
                break
        if matched and extension.get("continue") != "true":
            break
    return executed
