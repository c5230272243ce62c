"""A recording stand-in for the ``tensorrt`` module, generated from one version's real API surface.

Every class, method, property and enum member is the version's own: a name the version lacks raises
AttributeError, a call that matches none of a method's pybind11 overloads (argument count, keyword names,
basic types: numbers, strings, buffers, enums, TensorRT classes) raises TypeError as pybind11 would, and
instances of TensorRT's classes take no attributes they do not have. A property write is type-checked against
the setter's pybind11 signature with pybind11's implicit conversions (:func:`_settable`, checked against the real
bindings' verdicts in test_tensorrt_conformance.py): ``config.profiling_verbosity = "detailed"`` raises TypeError
as TensorRT does, the enum member is accepted. Calls and property writes are
recorded in ``module.calls``; ``module.behaviour`` maps ``"Class.member"`` to a value or a callable
(``(self, *args)``) for what TensorRT would return, else a default of the declared return type is given.
"""

from __future__ import annotations

import enum
import types
from typing import Any

import numpy as np

_NUMBERS = {"int": (int,), "typing.SupportsInt": (int,), "float": (int, float), "typing.SupportsFloat": (int, float)}
_BUFFERS = ("buffer", "typing_extensions.Buffer", "collections.abc.Buffer")


class Call(tuple):
    """(owner, member, args, kwargs) of one recorded call or property write (``args == (value,)``)."""

    @property
    def name(self) -> str:
        return f"{self[0]}.{self[1]}"


def _accepts(annotation: str, value: Any, module: types.ModuleType) -> bool:
    if not annotation or value is None and annotation.startswith(("Optional", "typing.Optional")):
        return True
    if annotation in _NUMBERS:
        return isinstance(value, _NUMBERS[annotation]) and not isinstance(value, enum.Enum)
    if annotation == "bool":
        return isinstance(value, (bool, np.bool_))
    if annotation == "str":
        return isinstance(value, str)
    if annotation in _BUFFERS:
        return isinstance(value, (bytes, bytearray, memoryview, np.ndarray))
    if annotation in ("Dims", "Dims32", "Dims64") or annotation.startswith(
        ("List[", "list[", "collections.abc.Sequence", "typing.Sequence")
    ):
        return isinstance(value, (list, tuple, module.__dict__.get(annotation, tuple)))
    target = module.__dict__.get(annotation.split(".")[0])
    for part in annotation.split(".")[1:]:
        target = getattr(target, part, None)
    if isinstance(target, type):
        return isinstance(value, target)
    return True


def _resolve(annotation: str, module: types.ModuleType):
    """The double's class for a signature's type name (``ILogger.Severity``; ``nvinfer1::TensorFormat``, the C++
    name pybind11 shows for a type registered after the signature was made), else None."""
    target = module.__dict__.get(annotation.split(".")[0].split("::")[-1])
    for part in annotation.split(".")[1:]:
        target = getattr(target, part, None)
    return target if isinstance(target, type) else None


def _converts(value: Any, kind: type) -> bool:
    """pybind11's int/float casters in convert mode: no strings, no float for an int (a NumPy float32 is not a
    Python float and converts through ``__int__``), otherwise whatever ``int()``/``float()`` takes."""
    if value is None or isinstance(value, (str, bytes, bytearray)) or (kind is int and isinstance(value, float)):
        return False
    try:
        kind(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _settable(annotation: str, value: Any, module: types.ModuleType) -> bool:
    """Whether pybind11 takes ``value`` for a property setter whose signature declares ``annotation``.

    A setter has one overload, so pybind11 loads its argument in convert mode: numbers (enums included) for
    int and float, str or bytes for str, anything with the buffer protocol for a buffer, None as False for a
    bool. Enums and classes take their own instances only; None is refused for them (TensorRT's value types
    refuse it; the pointer-typed setters that would take it as null are not told apart by their signature).
    """
    if not annotation or annotation == "object":
        return True
    if annotation in ("int", "typing.SupportsInt"):
        return _converts(value, int)
    if annotation in ("float", "typing.SupportsFloat"):
        return _converts(value, float)
    if annotation == "bool":
        return (
            value is None
            or isinstance(value, (bool, np.bool_, int, float, np.number))
            and not isinstance(value, enum.Enum)
        )
    if annotation in ("str", "FallbackString"):
        target = _resolve(annotation, module)
        return isinstance(value, (str, bytes)) or target is not None and isinstance(value, target)
    if annotation in _BUFFERS:
        try:
            memoryview(value)
        except TypeError:
            return False
        return True
    if annotation in ("Dims", "Dims32", "Dims64") or annotation.startswith(
        ("List[", "list[", "collections.abc.Sequence", "typing.Sequence")
    ):
        return isinstance(value, (list, tuple, module.__dict__.get(annotation, tuple)))
    target = _resolve(annotation, module)
    return isinstance(value, target) if target is not None else True


def _bind(owner: str, name: str, overloads: list[dict], args: tuple, kwargs: dict, module) -> dict:
    """The overload ``args``/``kwargs`` match, as pybind11 would pick it; TypeError when none does."""
    for overload in overloads:
        parameters = overload["parameters"]
        if any(p.get("variadic") for p in parameters):
            return overload
        if len(args) > len(parameters):
            continue
        given = {p["name"]: value for p, value in zip(parameters, args)}
        if set(kwargs) - {p["name"] for p in parameters} or set(kwargs) & set(given):
            continue
        given.update(kwargs)
        if any(p["name"] not in given and not p["default"] for p in parameters):
            continue
        if all(
            _accepts(p["type"], given[p["name"]], module)
            for p in parameters
            if p["name"] in given and p["name"] != "self"
        ):
            return overload
    shown = "; ".join("(" + ", ".join(f"{p['name']}: {p['type']}" for p in o["parameters"]) + ")" for o in overloads)
    raise TypeError(
        f"{owner}.{name}(): incompatible function arguments {args[1:]!r} {kwargs!r}; "
        f"the supported signatures are: {shown}"
    )


def _default(annotation: str, module):
    if annotation in ("None", ""):
        return None
    if annotation in ("int", "typing.SupportsInt"):
        return 0
    if annotation in ("float", "typing.SupportsFloat"):
        return 0.0
    if annotation == "bool":
        return True
    if annotation == "str":
        return ""
    if annotation.startswith(("List[", "list[")):
        return []
    target = module.__dict__.get(annotation.split(".")[0])
    for part in annotation.split(".")[1:]:
        target = getattr(target, part, None)
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return next(iter(target))
    if isinstance(target, type):
        return target.__new__(target)
    return None


def _method(owner: str, name: str, overloads: list[dict], module):
    def method(self, *args, **kwargs):
        overload = _bind(owner, name, overloads, (self, *args), kwargs, module)
        if name == "__init__":
            module.calls.append(
                Call((type(self).__name__ if type(self).__name__ != owner else owner, name, args, kwargs))
            )
            return None
        module.calls.append(Call((owner, name, args, kwargs)))
        behaviour = module.behaviour.get(f"{owner}.{name}", module)
        if behaviour is module:
            return _default(overload["returns"], module)
        return behaviour(self, *args, **kwargs) if callable(behaviour) else behaviour

    method.__name__ = name
    return method


def _property(owner: str, name: str, info: dict, module):
    def get(self):
        if name in self.__dict__.get("_values", {}):
            return self.__dict__["_values"][name]
        behaviour = module.behaviour.get(f"{owner}.{name}", module)
        if behaviour is module:
            return 0
        return behaviour(self) if callable(behaviour) else behaviour

    def set_(self, value):
        if info["readonly"]:
            raise AttributeError(f"{owner}.{name} is read-only")
        declared = info.get("type", "")
        if not _settable(declared, value, module):
            raise TypeError(
                f"{owner}.{name} = {value!r}: incompatible function arguments; "
                f"the supported signature is ({owner}, {declared}) -> None"
            )
        module.calls.append(Call((owner, name, (value,), {})))
        self.__dict__.setdefault("_values", {})[name] = value

    return property(get, set_)


def _make_class(name: str, entry: dict, module, namespace: dict) -> type:
    enum_entry = entry.get("enum")
    if enum_entry:
        kind = enum.IntEnum if enum_entry["ordered"] else enum.Enum
        made = kind(name, enum_entry["members"])
        if kind is enum.Enum:
            made.__int__ = made.__index__ = lambda self: self.value
        return made
    bases = tuple(namespace[b] for b in entry["bases"] if b in namespace) or (object,)
    attributes: dict[str, Any] = {"__module__": "tensorrt"}
    for method, overloads in entry["methods"].items():
        attributes[method] = _method(name, method, overloads, module)
    for prop, info in entry["properties"].items():
        attributes[prop] = _property(name, prop, info, module)

    generated: list[type] = []

    def __setattr__(self, key, value):
        if type(self) in generated and not isinstance(getattr(type(self), key, None), property):
            raise AttributeError(f"'tensorrt.{name}' object has no attribute '{key}'")
        object.__setattr__(self, key, value)

    attributes["__setattr__"] = __setattr__
    if "__bytes__" not in attributes and name == "IHostMemory":
        attributes["__bytes__"] = lambda self: module.behaviour.get("IHostMemory.__bytes__", b"\x00" * 2048)
    made = type(name, bases, attributes)
    generated.append(made)
    for nested, nested_entry in entry["classes"].items():
        type.__setattr__(made, nested, _make_class(nested, nested_entry, module, namespace))
    return made


def make_module(surface: dict) -> types.ModuleType:
    """A fresh ``tensorrt`` double for ``surface`` (see the module docstring)."""
    module = types.ModuleType("tensorrt", f"recording double of TensorRT {surface['version']}'s Python API")
    module.__version__ = surface["version"]
    module.calls = []
    module.behaviour = {}
    namespace: dict[str, type] = {}
    pending = dict(surface["classes"])
    while pending:
        progressed = False
        for name, entry in list(pending.items()):
            if all(base in namespace or base not in surface["classes"] for base in entry["bases"]):
                namespace[name] = _make_class(name, entry, module, namespace)
                del pending[name]
                progressed = True
        if not progressed:
            raise RuntimeError(f"circular bases in the surface: {sorted(pending)}")
    module.__dict__.update(namespace)
    for name, overloads in surface["functions"].items():
        if overloads:
            unbound = [
                {**o, "parameters": [{"name": "self", "type": "", "default": False}] + o["parameters"]}
                for o in overloads
            ]
            function = _method("tensorrt", name, unbound, module)
            module.__dict__[name] = lambda *args, _f=function, **kwargs: _f(None, *args, **kwargs)
    module.__dict__.update(surface["constants"])
    return module


def called(module, name: str) -> list[Call]:
    """The recorded calls of ``"Class.member"``."""
    return [call for call in module.calls if call.name == name]
