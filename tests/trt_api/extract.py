"""Print the API surface of the importable ``tensorrt_bindings`` as JSON (run in a subprocess, one version each).

Classes with their bases, methods (every pybind11 overload's parameter list and return type, read from the
docstring), properties (read-only or not), enums (members, whether they order), nested classes, and the
module's functions. Constructors are not called: with the stub libraries they return null.
"""

from __future__ import annotations

import inspect
import json
import re
import sys

PREFIX = re.compile(r"\btensorrt(?:_bindings)?(?:\.tensorrt)?\.")


def _split(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def _parameters(text: str) -> list[dict]:
    parameters = []
    for part in _split(text):
        name, _, rest = part.partition(":")
        annotation, _, default = rest.partition("=")
        if name.strip().startswith("*"):
            parameters.append({"name": name.strip(), "type": "", "default": True, "variadic": True})
            continue
        parameters.append(
            {"name": name.strip(), "type": PREFIX.sub("", annotation.strip()), "default": bool(default.strip())}
        )
    return parameters


def _overloads(name: str, doc: str | None) -> list[dict]:
    pattern = re.compile(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) -> (.*)$")
    found = []
    for line in (doc or "").splitlines():
        match = pattern.match(line.strip())
        if match and "*args, **kwargs" not in match.group(1):
            found.append({"parameters": _parameters(match.group(1)), "returns": PREFIX.sub("", match.group(2).strip())})
    return found


def _class(cls: type) -> dict:
    entry: dict = {
        "bases": [b.__name__ for b in cls.__bases__ if b.__module__.startswith("tensorrt")],
        "methods": {},
        "properties": {},
        "classes": {},
    }
    members = getattr(cls, "__members__", None)
    if isinstance(members, dict) and members:
        first = next(iter(members.values()))
        try:
            ordered = isinstance(first <= first, bool)
        except TypeError:
            ordered = False
        entry["enum"] = {"members": {key: int(value) for key, value in members.items()}, "ordered": ordered}
    for name, value in vars(cls).items():
        if name.startswith("__") and name not in (
            "__init__",
            "__len__",
            "__getitem__",
            "__iter__",
            "__bytes__",
            "__buffer__",
        ):
            continue
        if isinstance(value, property):
            entry["properties"][name] = {"readonly": value.fset is None}
        elif isinstance(value, type) and value.__module__.startswith("tensorrt"):
            entry["classes"][name] = _class(value)
        elif callable(value) and type(value).__name__ in ("instancemethod", "builtin_function_or_method", "function"):
            overloads = _overloads(name, getattr(value, "__doc__", None))
            entry["methods"][name] = overloads or [
                {
                    "parameters": [
                        {"name": "self", "type": "", "default": False},
                        {"name": "*args", "type": "", "default": True, "variadic": True},
                    ],
                    "returns": "",
                }
            ]
    return entry


def main() -> None:
    import tensorrt_bindings as trt

    surface = {"version": trt.__version__, "classes": {}, "functions": {}, "constants": {}}
    for name, value in vars(trt).items():
        if name.startswith("_"):
            continue
        if isinstance(value, type) and value.__module__.startswith("tensorrt"):
            surface["classes"][name] = _class(value)
        elif (
            callable(value)
            and getattr(value, "__module__", "")
            and str(getattr(value, "__module__", "")).startswith("tensorrt")
        ):
            overloads = _overloads(name, value.__doc__)
            if not overloads:
                try:
                    signature = inspect.signature(value)
                    overloads = [
                        {
                            "parameters": [
                                {"name": p.name, "type": "", "default": p.default is not p.empty}
                                for p in signature.parameters.values()
                            ],
                            "returns": "",
                        }
                    ]
                except (TypeError, ValueError):
                    overloads = []
            surface["functions"][name] = overloads
        elif isinstance(value, (int, float, str)):
            surface["constants"][name] = value
    json.dump(surface, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
