"""Reading what Windows PowerShell writes to stderr when it runs an encoded command.

``powershell.exe -EncodedCommand`` with redirected streams and no interactive console
serializes its error, warning and progress streams as CLIXML: ``#< CLIXML`` followed by
``<Objs ...>`` with one ``<S S="Error">`` element per line of each error record, control
characters escaped as ``_xHHHH_`` (a newline is ``_x000D__x000A_``), and progress records
("Preparing modules for first use.") as ``<Obj S="progress">``. Quoting that text verbatim
would show the user XML noise instead of the error, so the transport decodes it here.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

CLIXML_MARKER = "#< CLIXML"
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_STRING_ELEMENT = re.compile(r'<S S="(\w+)">(.*?)</S>', re.DOTALL)
# Streams worth showing, and how each line is introduced (errors stand for themselves).
_PREFIX = {"Error": "", "Warning": "WARNING: ", "Verbose": "VERBOSE: ", "Debug": "DEBUG: ",
           "Information": ""}
# Lines of an error record that locate it in the script rather than say what went wrong.
_RECORD_NOISE = re.compile(r"^\s*(\+ |At line:\d|At char:\d|~+$)")
_WHITESPACE = re.compile(r"\s+")


def unescape(text: str) -> str:
    """``text`` with PowerShell's ``_xHHHH_`` escapes replaced by the characters."""
    decoded = _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text)
    # Characters outside the BMP arrive as two escaped UTF-16 surrogates.
    return decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _streams(document: str) -> list[tuple[str, str]]:
    """(stream, text) of every string element of one ``<Objs>`` document, in order."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError:  # truncated output: take the string elements that are whole
        return [(kind, _xml_text(text)) for kind, text in _STRING_ELEMENT.findall(document)]
    found = []
    for element in root:
        if element.tag.rsplit("}", 1)[-1] == "S" and element.get("S") in _PREFIX:
            found.append((element.get("S") or "", element.text or ""))
    return found


def _xml_text(text: str) -> str:
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'").replace("&amp;", "&"))


def decode_clixml(text: str) -> str:
    """``text`` with each CLIXML block replaced by the plain lines it carries (errors,
    warnings, verbose and information messages); progress records are dropped. Text
    without the marker comes back unchanged."""
    if CLIXML_MARKER not in text:
        return text
    pieces = text.split(CLIXML_MARKER)
    out = [pieces[0]] if pieces[0].strip() else []
    for piece in pieces[1:]:
        start, end = piece.find("<Objs"), piece.rfind("</Objs>")
        if start < 0:
            out.append(piece.strip())
            continue
        document = piece[start:end + len("</Objs>")] if end >= 0 else piece[start:]
        out.append("".join(_PREFIX[kind] + unescape(line) for kind, line in _streams(document)))
        if end >= 0 and piece[end + len("</Objs>"):].strip():
            out.append(piece[end + len("</Objs>"):].strip())
    return "\n".join(part.strip("\r\n") for part in out if part.strip())


def error_summary(text: str, limit: int = 300) -> str:
    """The lines of a (decoded) stderr that say what went wrong, on one line: the position
    and category lines PowerShell appends to each error record are left out."""
    lines = [line for line in decode_clixml(text).splitlines()
             if line.strip() and not _RECORD_NOISE.match(line)]
    folded = _WHITESPACE.sub(" ", " ".join(lines)).strip()
    return folded if len(folded) <= limit else folded[:limit - 1] + "…"
