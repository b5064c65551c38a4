"""Airflow 3's design tokens, read from the UI bundle the installed ``apache-airflow`` ships.

Airflow's UI is React with Chakra UI v3; its built bundle (``airflow/ui/dist/assets/*.js``) holds
Airflow's theme as object literals: the palette (``tokens.colors``: ``gray.50`` …, ``brand.600`` …,
``black``), semantic palettes per state made by one factory (``success: f("green")`` gives
``success.solid``, ``success.subtle``, ``success.fg`` … with a light and a dark value), and Chakra's
own defaults underneath (``bg``, ``bg.subtle``, ``fg.muted``, ``border`` …, the base colour
``white`` and the font stacks). The plugin's stylesheet is checked against these, so an Airflow
upgrade that moves a token fails the tests and names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import airflow

ASSETS = Path(airflow.__file__).parent / "ui" / "dist" / "assets"
SCHEMES = ("light", "dark")
THEME = "{tokens:{colors:{"
"""Where Airflow's theme starts; Chakra's defaults never write it."""
Value = object  # what _Literal returns: str, float, bool, dict, list or a _Call


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple


class _Literal:
    """A reader of the JavaScript object literals a minifier writes (keys, backtick strings,
    numbers, ``!0``, calls, bare names); it refuses anything else rather than guess."""

    def __init__(self, text: str, at: int) -> None:
        self.text, self.at = text, at

    def read(self) -> Value:
        char = self.text[self.at]
        if char == "{":
            return self._object()
        if char == "[":
            return self._list()
        if char in "`\"'":
            return self._string()
        if char == "!":
            self.at += 2
            return self.text[self.at - 1] == "0"
        number = re.compile(r"-?\d*\.?\d+").match(self.text, self.at)
        if number:
            self.at = number.end()
            return float(number.group())
        name = self._name()
        if self.text[self.at] == "(":
            self.at += 1
            args = self._items(")")
            return _Call(name, tuple(args))
        return _Call(name, ())  # a bare name, e.g. a parameter

    def _name(self) -> str:
        match = re.compile(r"[A-Za-z_$][\w$]*").match(self.text, self.at)
        if not match:
            raise ValueError(f"unexpected {self.text[self.at : self.at + 40]!r}")
        self.at = match.end()
        return match.group()

    def _string(self) -> str:
        quote, start = self.text[self.at], self.at + 1
        end = self.text.index(quote, start)
        self.at = end + 1
        return self.text[start:end]

    def _items(self, close: str) -> list[Value]:
        items: list[Value] = []
        while self.text[self.at] != close:
            items.append(self.read())
            if self.text[self.at] == ",":
                self.at += 1
        self.at += 1
        return items

    def _list(self) -> list[Value]:
        self.at += 1
        return self._items("]")

    def _object(self) -> dict[str, Value]:
        self.at += 1
        result: dict[str, Value] = {}
        while self.text[self.at] != "}":
            if self.text[self.at] in "`\"'":
                key = self._string()
            elif self.text[self.at].isdigit() or self.text[self.at] == ".":
                key = re.compile(r"\d*\.?\d+").match(self.text, self.at).group()  # type: ignore[union-attr]
                self.at += len(key)
            else:
                key = self._name()
            if self.text[self.at] != ":":
                raise ValueError(f"unexpected {self.text[self.at : self.at + 40]!r}")
            self.at += 1
            result[key] = self.read()
            if self.text[self.at] == ",":
                self.at += 1
        self.at += 1
        return result


def _literal_after(text: str, pattern: str) -> dict[str, Value]:
    """The object literal right after the one match of ``pattern``."""
    matches = list(re.finditer(pattern, text))
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} matches of {pattern!r} in Airflow's UI bundle")
    value = _Literal(text, matches[0].end()).read()
    assert isinstance(value, dict)
    return value


def _flatten(colors: dict[str, Value], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, entry in colors.items():
        assert isinstance(entry, dict)
        if "value" in entry and isinstance(entry["value"], str):
            flat[prefix + key] = entry["value"]
        else:
            flat.update(_flatten(entry, f"{prefix}{key}."))
    return flat


def _ref(value: Value) -> str:
    """``{colors.gray.50}`` as ``gray.50``; a bare CSS colour word (``white``) as itself."""
    assert isinstance(value, str)
    match = re.fullmatch(r"\{colors\.([\w.]+)\}", value)
    return match.group(1) if match else value


def _side(value: Value, side: str) -> Value:
    """One side (``_light``, ``_dark``) of a token's value; a value without sides is both."""
    return value[side] if isinstance(value, dict) else value


def _modes(entry: Value) -> tuple[str, str]:
    assert isinstance(entry, dict)
    return _ref(_side(entry["value"], "_light")), _ref(_side(entry["value"], "_dark"))


@dataclass(frozen=True)
class Theme:
    palette: dict[str, str]
    """``gray.50`` → ``oklch(…)``; ``white``, ``black``."""
    semantic: dict[str, tuple[str, str]]
    """``bg.subtle`` → (palette name in light, in dark), e.g. (``gray.50``, ``gray.950``)."""
    fonts: dict[str, str]
    """``body``, ``heading``, ``mono`` → font stack."""

    def resolve(self, token: str, scheme: str) -> str:
        """The palette name a semantic token stands for in ``scheme``."""
        return self.semantic[token][SCHEMES.index(scheme)]

    def colour(self, token: str, scheme: str) -> str:
        """The CSS colour of a semantic token in ``scheme``."""
        return self.palette[self.resolve(token, scheme)]


def _semantic_palettes(bundle: str, theme: dict[str, Value]) -> dict[str, tuple[str, str]]:
    """Airflow's semantic palettes (``success``, ``failed``, ``brand`` …), each made by one factory
    whose template names the palette by its first parameter (``{colors.${e}.600}``)."""
    calls = theme["semanticTokens"]["colors"]  # type: ignore[index]
    factories = {call.name for call in calls.values()}  # type: ignore[union-attr]
    if len(factories) != 1:
        raise LookupError(f"Airflow's semantic palettes come from {factories}, not one factory")
    head = re.search(rf"\b{re.escape(factories.pop())}=\((\w+)(?:,(\w+)=`([^`]*)`)?\)=>\(\{{", bundle)
    if head is None:
        raise LookupError("the factory of Airflow's semantic palettes")
    param, default_param, default = head.groups()
    template = _Literal(bundle, head.end() - 1).read()
    assert isinstance(template, dict)

    def named(value: Value, palette: str) -> str:
        if isinstance(value, _Call) and value.name == default_param:  # e.g. contrast's dark side
            value = default
        return _ref(str(value).replace(f"${{{param}}}", palette))

    return {
        f"{group}.{key}": (
            named(_side(entry["value"], "_light"), palette),  # type: ignore[index]
            named(_side(entry["value"], "_dark"), palette),  # type: ignore[index]
        )
        for group, call in calls.items()  # type: ignore[union-attr]
        for palette in call.args
        for key, entry in template.items()
    }


@cache
def airflow_theme() -> Theme:
    """Airflow's tokens as its installed UI bundle defines them."""
    bundles = [text for path in sorted(ASSETS.glob("*.js")) if THEME in (text := path.read_text())]
    if len(bundles) != 1:
        raise LookupError(f"{len(bundles)} bundles in {ASSETS} hold a theme")
    (bundle,) = bundles
    theme = _Literal(bundle, bundle.index(THEME)).read()
    assert isinstance(theme, dict)
    palette = _flatten(_literal_after(bundle, r"\.colors\((?=\{transparent:)"))
    palette.update(_flatten(theme["tokens"]["colors"]))  # type: ignore[index,arg-type]
    chakra = _literal_after(bundle, r"\.colors\((?=\{bg:\{DEFAULT:)")
    semantic = {
        group if key == "DEFAULT" else f"{group}.{key}": _modes(entry)
        for group, keys in chakra.items()
        for key, entry in keys.items()  # type: ignore[union-attr]
    }
    semantic.update(_semantic_palettes(bundle, theme))
    fonts = {}
    for name, entry in _literal_after(bundle, r"\.fonts\((?=\{heading:)").items():
        stack = entry["value"]  # type: ignore[index]
        for variable in re.findall(r"\$\{(\w+)\}", stack):
            constant = re.search(rf"\b{variable}=`([^`]*)`", bundle)
            if constant is None:
                raise LookupError(f"{variable} in the font stack {stack!r}")
            stack = stack.replace(f"${{{variable}}}", constant.group(1))
        fonts[name] = stack
    return Theme(palette=palette, semantic=semantic, fonts=fonts)
