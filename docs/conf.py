"""
Sphinx configuration for twisted_streaming.

The docstrings are epytext, as in Twisted; L{_epytextToRest} turns them into
reST as autodoc reads them, and the C{zope-interface} directive documents
zope.interface interfaces, which autodoc cannot.
"""

from __future__ import annotations

import inspect
import os
import re
from typing import Any, List

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import twisted_streaming

_logger = logging.getLogger(__name__)

project = "twisted_streaming"
author = "The twisted_streaming developers"
copyright = "2026, " + author
release = version = twisted_streaming.__version__

extensions = ["sphinx.ext.autodoc"]
html_theme = "furo"
html_title = "twisted_streaming"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"
# _processDocstring adds the docstring of a constructor of our own.
autoclass_content = "class"

_MARKUP = re.compile(r"([LCIBU])\{([^{}]*)\}")
_FIELD = re.compile(
    r"^(\s*)@(param|type|return|rtype|raise|ivar|cvar|var|since|note)\b\s*([^:]*):"
)


def _markup(match: re.Match[str]) -> str:
    kind, text = match.group(1), match.group(2)
    if kind == "L":
        text = text.split("<")[0].strip()
    text = text.replace("\\\\", "\\")
    if kind in "LCU":
        return f"``{text}``"
    return f"*{text}*" if kind == "I" else f"**{text}**"


_BULLET = re.compile(r"^(\s*)[-*] ")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _dedentLists(lines: List[str]) -> None:
    """
    Move each epytext list that is indented under the paragraph before it
    (C{"  - item"}) back to that paragraph's indentation: indented, reST
    reads it as a block quote.
    """
    i = 0
    while i < len(lines):
        match = _BULLET.match(lines[i])
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        if (
            match is None
            or before < 0
            or _BULLET.match(lines[before])
            or len(match.group(1)) <= _indent(lines[before])
        ):
            i += 1
            continue
        itemIndent = len(match.group(1))
        shift = itemIndent - _indent(lines[before])
        while i < len(lines) and (
            not lines[i].strip() or _indent(lines[i]) >= itemIndent
        ):
            lines[i] = lines[i][shift:] if lines[i].strip() else lines[i]
            i += 1


def _epytextToRest(lines: List[str]) -> None:
    """
    Rewrite epytext markup, fields and indented lists in place as reST.
    """
    _dedentLists(lines)
    text = "\n".join(lines)
    while True:
        new = _MARKUP.sub(_markup, text)
        if new == text:
            break
        text = new
    out = []
    for line in text.split("\n"):
        match = _FIELD.match(line)
        if match:
            indent, field, arg = match.groups()
            name = {"return": "returns", "raise": "raises", "cvar": "var"}.get(
                field, field
            )
            rest = line[match.end() :]
            line = (
                f"{indent}:{name} {arg.strip()}:{rest}"
                if arg.strip()
                else f"{indent}:{name}:{rest}"
            )
        out.append(line)
    lines[:] = out


def _processDocstring(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: List[str]
) -> None:
    if what in ("class", "exception"):
        # The constructor's @params, after the class docstring, if the
        # constructor is this package's (not, say, twisted's Failure's).
        init = getattr(obj, "__init__", None)
        module = getattr(init, "__module__", None) or ""
        if init is not None and module.startswith("twisted_streaming") and init.__doc__:
            lines.extend(["", *inspect.cleandoc(init.__doc__).splitlines()])
    _epytextToRest(lines)


class ZopeInterface(SphinxDirective):
    """
    C{.. zope-interface:: dotted.name}: an interface, its attributes and its
    methods, from their docstrings.
    """

    required_arguments = 1

    def run(self) -> List[nodes.Node]:
        moduleName, _, name = self.arguments[0].rpartition(".")
        module = __import__(moduleName, fromlist=[name])
        iface = getattr(module, name)
        bases = ", ".join(
            b.__name__ for b in iface.__bases__ if b.__name__ != "Interface"
        )
        rst = [
            f".. py:class:: {name}" + (f"({bases})" if bases else ""),
            f"   :module: {moduleName}",
            "",
        ]
        rst += self._body(iface.__doc__ or "", "   ")
        for member in iface.names():
            description = iface[member]
            getSignature = getattr(description, "getSignatureString", None)
            if getSignature is not None:
                rst += ["", f"   .. py:method:: {member}{getSignature()}", ""]
            else:
                rst += ["", f"   .. py:attribute:: {member}", ""]
            rst += self._body(description.getDoc() or "", "      ")
        node = nodes.section()
        self.state.nested_parse(
            StringList(rst, self.arguments[0]), self.content_offset, node
        )
        return node.children

    def _body(self, doc: str, indent: str) -> List[str]:
        lines = inspect.cleandoc(doc).splitlines()
        _epytextToRest(lines)
        return [indent + line if line else "" for line in lines]


def _checkEveryPublicName(app: Sphinx) -> None:
    """
    Warn (an error under C{-W}, as C{make docs} builds) for each name of
    C{twisted_streaming.__all__}, and of the public modules' C{__all__},
    that the API reference does not mention.
    """
    from twisted_streaming import websocket

    with open(os.path.join(app.srcdir, "api.rst"), encoding="utf-8") as f:
        text = f.read()
    for module in (twisted_streaming, websocket):
        for name in module.__all__:
            if name != "__version__" and name not in text:
                _logger.warning(
                    "%s.%s is public but not in api.rst",
                    module.__name__,
                    name,
                    location="api",
                )


def setup(app: Sphinx) -> None:
    app.connect("builder-inited", _checkEveryPublicName)
    app.connect("autodoc-process-docstring", _processDocstring)
    app.add_directive("zope-interface", ZopeInterface)
