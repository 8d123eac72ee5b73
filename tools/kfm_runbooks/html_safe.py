"""Notebook HTML made inert for the report: an allow-list sanitiser and a strict CSP.

An executed notebook's outputs are whatever its cells displayed: `<script>`, `<iframe>`,
remote images, event handlers, `<style>` that calls out, SVG with `onload`, Javascript
outputs. The report promises no script and no external resource, so the rendered notebook
goes through `sanitize` (nh3, the Ammonia sanitiser: only the tags and attributes that
nbconvert's markup and ordinary outputs need; images only as embedded `data:image/`;
links only http(s)/mailto; styles reduced to a few typographic properties) and the page
carries `CSP_META`, which forbids scripts, frames, forms and every fetch but embedded
images, in case anything got past the sanitiser.
"""

from __future__ import annotations

import base64
from typing import Any

import nh3

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'

_TEXT = {"p", "span", "div", "pre", "code", "br", "hr", "b", "i", "em", "strong", "u", "s"}
_TEXT |= {"small", "sub", "sup", "mark", "kbd", "samp", "var", "tt", "abbr", "cite", "q"}
_TEXT |= {"del", "ins", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6"}
_STRUCTURE = {"ul", "ol", "li", "dl", "dt", "dd", "details", "summary", "figure", "figcaption"}
_TABLES = {"table", "caption", "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td"}
TAGS = _TEXT | _STRUCTURE | _TABLES | {"a", "img"}
# Removed with everything inside them (the rest lose only their tags).
DROPPED_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "svg", "math", "template"}
ATTRIBUTES = {
    "*": {"class", "title", "style", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
}
STYLE_PROPERTIES = {
    "color",
    "background-color",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "text-align",
    "text-decoration",
    "white-space",
}


def _attribute(tag: str, name: str, value: str) -> str | None:
    """Images only embedded (a remote `src` is a request); links never to `data:`."""
    if tag == "img" and name == "src":
        return value if value.startswith("data:image/") else None
    if tag == "a" and name == "href" and value.strip().lower().startswith("data:"):
        return None
    return value


def sanitize(fragment: str) -> str:
    """`fragment` with nothing active or external left in it."""
    return str(
        nh3.clean(
            fragment,
            tags=TAGS,
            clean_content_tags=DROPPED_WITH_CONTENT,
            attributes=ATTRIBUTES,
            attribute_filter=_attribute,
            url_schemes={"http", "https", "mailto", "data"},
            filter_style_properties=STYLE_PROPERTIES,
        )
    )


def inert_outputs(nb: Any) -> None:
    """Before rendering: SVG becomes an embedded image (an `<img>` never runs its scripts)
    and Javascript outputs are dropped (nbconvert would emit them as `<script>`)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            data = output.get("data", {})
            for mime in [m for m in data if "javascript" in m]:
                del data[mime]
            svg = data.pop("image/svg+xml", None)
            if svg is not None and "image/png" not in data and "text/html" not in data:
                encoded = base64.b64encode("".join(svg).encode()).decode()
                data["text/html"] = f'<img src="data:image/svg+xml;base64,{encoded}" alt="SVG">'
