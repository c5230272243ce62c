"""Print the API surface of the importable ``tensorrt_bindings`` as JSON (run in a subprocess, one version each).

Classes with their bases, methods (every pybind11 overload's parameter list and return type, read from the
docstring), properties (read-only or not, and the type the setter's pybind11 signature takes), enums (members,
whether they order), nested classes, and the module's functions. Constructors of TensorRT's interfaces are not
called: with the stub libraries they return null.

The setter probes are the real bindings' verdicts on property writes: for :data:`PROBED_SETTERS` (plain value
classes the stubs let us construct, whose setters only store the value) each value of :func:`probe_values` is
written and the outcome recorded, so the double's setter type-checking is compared with pybind11's own.
"""

from __future__ import annotations

import inspect
import json
import re
import sys

PREFIX = re.compile(r"\btensorrt(?:_bindings)?(?:\.tensorrt)?\.")
SIGNATURE = re.compile(r"^\((.*)\) -> (.*)$")

PROBED_SETTERS = (
    ("DimsHW", "h"),
    ("PluginTensorDesc", "dims"),
    ("PluginTensorDesc", "type"),
    ("PluginTensorDesc", "format"),
    ("PluginTensorDesc", "scale"),
    ("DynamicPluginTensorDesc", "desc"),
    ("PluginField", "name"),
    ("PluginField", "data"),
    ("PluginField", "type"),
    ("PluginField", "size"),
    ("IPluginV3OneCore", "plugin_name"),
    ("Logger", "min_severity"),
)
"""(class, property) pairs whose setters are probed; others are not written (some crash on a wrong value)."""


def probe_values(trt, annotation: str) -> dict:
    """The values written to a setter declared to take ``annotation``, by name; ``trt`` is the real module or
    the double, so both sides write the same values."""
    import numpy as np

    target = trt.__dict__.get(annotation.split(".")[0].split("::")[-1])
    for part in annotation.split(".")[1:]:
        target = getattr(target, part, None)
    values = {
        "str": "detailed",
        "bytes": b"detailed",
        "int": 3,
        "bool": True,
        "float": 0.5,
        "none": None,
        "list": [1, 2],
        "tuple": (1, 2),
        "numpy_int64": np.int64(3),
        "numpy_float32": np.float32(0.5),
        "numpy_float64": np.float64(0.5),
        "array": np.zeros(3, dtype=np.float32),
        "other_enum": trt.TensorIOMode.INPUT,
    }
    members = getattr(target, "__members__", None)
    if members:
        values["own_enum"] = list(members.values())[-1]
    elif isinstance(target, type):
        values["own_class"] = target
    return values


def _probe(trt, owner: type, name: str, annotation: str) -> dict[str, str]:
    outcomes = {}
    for probe, value in probe_values(trt, annotation).items():
        instance = owner()
        if probe == "own_class":
            try:
                value = value()
            except TypeError:  # no default constructor: not probed
                continue
        try:
            setattr(instance, name, value)
            outcomes[probe] = "accepted"
        except Exception as error:  # the outcome is what is recorded, whatever pybind11 raises
            outcomes[probe] = type(error).__name__
    return outcomes


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


def _setter_type(setter) -> str:
    """The value type of a pybind11 property setter, from its signature ``(self, value: T) -> None``."""
    first = ((getattr(setter, "__doc__", None) or "").strip().splitlines() or [""])[0]
    match = SIGNATURE.match(first)
    parameters = _parameters(match.group(1)) if match else []
    return parameters[1]["type"] if len(parameters) == 2 else ""


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
            entry["properties"][name] = {
                "readonly": value.fset is None,
                "type": _setter_type(value.fset) if value.fset is not None else "",
            }
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

    surface = {"version": trt.__version__, "classes": {}, "functions": {}, "constants": {}, "setter_probes": []}
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
    for owner, name in PROBED_SETTERS:
        cls = getattr(trt, owner, None)
        annotation = surface["classes"].get(owner, {}).get("properties", {}).get(name, {}).get("type")
        if cls is not None and annotation:
            outcomes = _probe(trt, cls, name, annotation)
            surface["setter_probes"].append(
                {"class": owner, "property": name, "type": annotation, "outcomes": outcomes}
            )
    json.dump(surface, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
