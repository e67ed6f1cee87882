"""A screenshot-like picture of a Components V2 message, drawn from its payload.

For the README and for a person reading a test's output: what a student would roughly see
for the components the bot sent (text displays with their headings, bold and small text, code
blocks; media galleries; selects with their chosen option; buttons), in Discord's dark theme.
It is a sketch, not Discord's renderer: emoji are shown by name and markdown only in part.
"""

from __future__ import annotations

import io
import re
import textwrap
from typing import Any

BACKGROUND, CARD, ACCENT = "#313338", "#2b2d31", "#5865f2"
TEXT, MUTED, CONTROL = "#dbdee1", "#949ba4", "#1e1f22"
WIDTH_IN, DPI, CHARS = 7.0, 110, 86
EMOJI_NAMES = {"👍": "+1", "👎": "-1"}


def draw_message(message: dict[str, Any], files: dict[str, bytes]) -> bytes:
    """A PNG of `message` (its `components`), its `attachment://` pictures from `files`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch
    from PIL import Image

    blocks = list(_blocks(message.get("components") or [], files, Image))
    heights = [h for _, _, h in blocks]
    total = sum(heights) + 0.4
    fig = plt.figure(figsize=(WIDTH_IN, total), dpi=DPI, facecolor=BACKGROUND)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH_IN)
    ax.set_ylim(total, 0)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((0.15, 0.15), WIDTH_IN - 0.3, total - 0.3,
                                boxstyle="round,pad=0,rounding_size=0.08", fc=CARD, ec="none"))
    ax.add_patch(FancyBboxPatch((0.15, 0.15), 0.05, total - 0.3, boxstyle="square,pad=0",
                                fc=ACCENT, ec="none"))
    y = 0.25
    for kind, value, height in blocks:
        if kind == "image":
            w, h = value.size
            shown_w = min(WIDTH_IN - 0.8, height * w / h)
            ax.imshow(value, extent=(0.4, 0.4 + shown_w, y + height - 0.05, y + 0.05),
                      aspect="auto", zorder=3)
        elif kind == "control":
            label, wide = value
            box_w = WIDTH_IN - 0.8 if wide else 0.6
            ax.add_patch(FancyBboxPatch((0.4, y + 0.06), box_w, height - 0.12,
                                        boxstyle="round,pad=0,rounding_size=0.05",
                                        fc=CONTROL, ec="#3f4147"))
            ax.text(0.5, y + height / 2, label, color=TEXT, va="center", fontsize=9)
            if wide:
                ax.text(WIDTH_IN - 0.55, y + height / 2, "v", color=MUTED, va="center")
        elif kind == "buttons":
            for n, label in enumerate(value):
                ax.add_patch(FancyBboxPatch((0.4 + n * 0.7, y + 0.06), 0.6, height - 0.12,
                                            boxstyle="round,pad=0,rounding_size=0.05",
                                            fc="#4e5058", ec="none"))
                ax.text(0.7 + n * 0.7, y + height / 2, label, color=TEXT, va="center",
                        ha="center", fontsize=9)
        else:
            size, colour, family, weight = value[1]
            ax.text(0.4, y + 0.02, value[0], color=colour, va="top", fontsize=size,
                    family=family, weight=weight)
        y += height
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, facecolor=BACKGROUND, metadata={"Software": None})
    plt.close(fig)
    return out.getvalue()


def _blocks(components: list[dict[str, Any]], files: dict[str, bytes], image_module: Any):
    """(kind, value, height in inches) for each thing drawn, top to bottom."""
    for component in components:
        kind = component.get("type")
        if kind in (17, 9):  # container, section: their children, in order
            yield from _blocks(component.get("components") or [], files, image_module)
        elif kind == 10:
            yield from _text(str(component.get("content") or ""))
        elif kind == 12:
            for item in component.get("items") or []:
                name = str(item["media"]["url"]).removeprefix("attachment://")
                if name in files:
                    picture = image_module.open(io.BytesIO(files[name])).convert("RGB")
                    w, h = picture.size
                    yield "image", picture, min(4.5, (WIDTH_IN - 0.8) * h / w) + 0.1
        elif kind == 1:
            children = component.get("components") or []
            if children and children[0].get("type") == 3:
                menu = children[0]
                chosen = [o["label"] for o in menu.get("options") or [] if o.get("default")]
                placeholder = menu.get("placeholder") or "Select"
                label = f"{chosen[0]}    ({placeholder})" if chosen else placeholder
                yield "control", (label, True), 0.42
            else:
                yield "buttons", [_button(b) for b in children], 0.42


def _button(button: dict[str, Any]) -> str:
    emoji = (button.get("emoji") or {}).get("name") or ""
    return button.get("label") or EMOJI_NAMES.get(emoji, emoji)


def _text(content: str):
    in_code = False
    for line in content.splitlines() or [""]:
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            yield "text", (line[:CHARS], (8, TEXT, "monospace", "normal")), 0.16
            continue
        style = (9.5, TEXT, "sans-serif", "normal")
        if line.startswith("### "):
            line, style = line[4:], (12, "#ffffff", "sans-serif", "bold")
        elif line.startswith("-# "):
            line, style = line[3:], (8, MUTED, "sans-serif", "normal")
        elif line.startswith("**") and line.endswith("**"):
            line, style = line[2:-2], (9.5, TEXT, "sans-serif", "bold")
        line = re.sub(r"\*\*|__|\\(?=[^\w\s])", "", line)
        for part in textwrap.wrap(line, CHARS) or [""]:
            yield "text", (part, style), 0.25 if style[0] >= 12 else 0.2
