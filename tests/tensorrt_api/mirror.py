"""Objects that stand where TensorRT's native library would answer, checked against the genuine module.

With the stub native libraries, every TensorRT factory returns NULL, so no real Builder or Runtime
exists to call. A :class:`Mirror` stands for an instance of a genuine binding class (``trt.Builder``,
``trt.IBuilderConfig``, …): every attribute our code reads must exist on that class, every method
call must match one of the pybind11 signatures the class declares (argument count, keyword names
and types, read from the genuine module's docstrings), and every property written must have a
setter taking that type. Results are the test's ``answers`` where given (None for a constructor:
its native factory fails), else a mirror of the declared return class. Enums, ``Logger``,
``IProgressMonitor``, ``Dims`` and ``nptype`` are the genuine module's own: they run without native
code.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

# Classes our code constructs; the module view hands out mirrors of them instead.
FACTORIES = ("Builder", "Runtime", "OnnxParser")
# C++ names some docstrings show instead of the Python class.
CPP_NAMES = {"nvonnxparser::IParserError": "ParserError"}
_SIGNATURE = re.compile(r"^(?:\d+\. )?(\w*)\((.*)\) -> (.+)$")


class APIMismatch(AssertionError):
    """Our code used the TensorRT API in a way the genuine module does not offer."""


@dataclass
class World:
    """The genuine module, the answers the test gives, and every call made (``"Class.member"``, args)."""

    trt: ModuleType
    answers: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, tuple]] = field(default_factory=list)

    def answer(self, key: str, declared: str, args: tuple, kwargs: dict) -> Any:
        self.calls.append((key, args + tuple(kwargs.items())))
        if key in self.answers:
            given = self.answers[key]
            return given(*args, **kwargs) if callable(given) and not isinstance(given, type) else given
        cls = self.resolve(declared)
        if isinstance(cls, type) and not _is_enum(cls):
            return Mirror(cls, self)
        defaults = {"None": None, "bool": True, "int": 0, "str": ""}
        if declared in defaults:
            return defaults[declared]
        raise APIMismatch(f"{key} returns {declared}; give the test an answer for it")

    def resolve(self, text: str) -> Any:
        """The genuine class a type in a signature names, or None for a builtin or typing type."""
        text = CPP_NAMES.get(text, text)
        for prefix in ("tensorrt_bindings.tensorrt.", "tensorrt.tensorrt.", "tensorrt."):
            if text.startswith(prefix):
                return getattr(self.trt, text[len(prefix) :], None)
        return getattr(self.trt, text, None) if text in CPP_NAMES.values() else None

    def accepts(self, text: str, value: Any) -> bool:
        """Whether pybind11 would take ``value`` for a parameter declared ``text``."""
        text = text.strip()
        if text.startswith(("typing.Optional[", "Optional[")):
            return value is None or self.accepts(text[text.index("[") + 1 : -1], value)
        if text in ("int", "typing.SupportsInt"):
            return isinstance(value, int) and not isinstance(value, bool)
        if text in ("float", "typing.SupportsFloat"):
            return isinstance(value, int | float) and not isinstance(value, bool)
        if text in ("bool", "str", "tuple", "list", "dict"):
            return type(value).__name__ == text
        if text in ("buffer", "typing_extensions.Buffer", "collections.abc.Buffer"):
            try:
                memoryview(value)
            except TypeError:
                return False
            return True
        if text in ("os.PathLike", "typing.Union[str, os.PathLike]"):
            return isinstance(value, str | os.PathLike)
        cls = self.resolve(text)
        if not isinstance(cls, type):
            raise APIMismatch(f"the mirror cannot check a parameter of type {text!r}; teach it")
        if isinstance(value, Mirror):
            return issubclass(value._cls, cls)
        if isinstance(value, cls):
            return True
        try:  # pybind11's implicit conversions (a tuple to Dims)
            cls(value)
        except Exception:
            return False
        return not _is_enum(cls) and not isinstance(value, str)


@dataclass(frozen=True)
class Signature:
    name: str
    parameters: tuple[tuple[str, str, bool], ...]  # (name, type, has a default), self left out
    returns: str


def signatures(member: Any) -> list[Signature]:
    """The pybind11 signatures a method, constructor or property accessor declares in its docstring."""
    found = []
    for line in (member.__doc__ or "").splitlines():
        match = _SIGNATURE.match(line.strip())
        if match is None or match.group(2) == "*args, **kwargs":
            continue
        parameters = []
        for part in _split(match.group(2)):
            name, _, rest = part.partition(":")
            declared, _, default = rest.partition(" = ")
            parameters.append((name.strip(), declared.strip(), bool(default)))
        found.append(Signature(match.group(1), tuple(parameters[1:]), match.group(3).strip()))
    return found


def _split(text: str) -> list[str]:
    """Splits a parameter list at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[(<"
        depth -= char in "])>"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()] if current.strip() else parts


def _is_enum(cls: type) -> bool:
    return hasattr(cls, "__members__")


def call(world: World, key: str, member: Any, args: tuple, kwargs: dict) -> Any:
    """Checks a call against ``member``'s declared signatures; the world's answer when one matches."""
    declared = signatures(member)
    if not declared:
        raise APIMismatch(f"{key} declares no signature in the genuine module")
    for signature in declared:
        if _matches(world, signature, args, kwargs):
            return world.answer(key, signature.returns, args, kwargs)
    shown = "; ".join(f"({', '.join(f'{n}: {t}' for n, t, _ in s.parameters)})" for s in declared)
    raise APIMismatch(f"{key} called with {args!r} {kwargs!r}; TensorRT {world.trt.__version__} declares {shown}")


def _matches(world: World, signature: Signature, args: tuple, kwargs: dict) -> bool:
    parameters = signature.parameters
    if len(args) > len(parameters):
        return False
    names = [name for name, _, _ in parameters]
    if any(name not in names[len(args) :] for name in kwargs):
        return False
    for (name, declared, has_default), position in zip(parameters, range(len(parameters)), strict=True):
        if position < len(args):
            value = args[position]
        elif name in kwargs:
            value = kwargs[name]
        elif has_default:
            continue
        else:
            return False
        if not world.accepts(declared, value):
            return False
    return True


class Mirror:
    """An instance of the genuine class ``cls`` as far as our code can tell (see the module docstring)."""

    def __init__(self, cls: type, world: World) -> None:
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_world", world)

    def _member(self, name: str) -> Any:
        member = inspect.getattr_static(self._cls, name, None)
        if member is None:
            raise APIMismatch(f"TensorRT {self._world.trt.__version__}: {self._cls.__name__} has no {name!r}")
        return member

    def __getattr__(self, name: str) -> Any:
        member = self._member(name)
        key = f"{self._cls.__name__}.{name}"
        if isinstance(member, property):
            (getter,) = signatures(member.fget) or [Signature(name, (), "object")]
            return self._world.answer(key, getter.returns, (), {})
        return lambda *args, **kwargs: call(self._world, key, member, args, kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        member = self._member(name)
        key = f"{self._cls.__name__}.{name}"
        if not isinstance(member, property) or member.fset is None:
            raise APIMismatch(f"{key} cannot be set in TensorRT {self._world.trt.__version__}")
        (setter,) = signatures(member.fset)
        declared = setter.parameters[-1][1]
        if not self._world.accepts(declared, value):
            raise APIMismatch(f"{key} takes {declared}, not {value!r}")
        self._world.calls.append((f"{key}=", (value,)))

    def __str__(self) -> str:
        return call(self._world, f"{self._cls.__name__}.__str__", self._member("__str__"), (), {})

    def __int__(self) -> int:
        return call(self._world, f"{self._cls.__name__}.__int__", self._member("__int__"), (), {})


class ModuleView(ModuleType):
    """The genuine module, except that its native factories hand out mirrors."""

    def __init__(self, world: World) -> None:
        super().__init__(world.trt.__name__)
        self._world = world

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._world.trt, name)
        if name not in FACTORIES:
            return real
        return _factory(self._world, real)


def _factory(world: World, cls: type) -> Callable[..., Mirror]:
    def construct(*args: Any, **kwargs: Any) -> Any:
        key = f"{cls.__name__}.__init__"
        if key in world.answers and world.answers[key] is None:  # a failing factory, as pybind11 reports it
            raise TypeError("pybind11::init(): factory function returned nullptr")
        call(world, key, inspect.getattr_static(cls, "__init__"), args, kwargs)
        return Mirror(cls, world)

    return construct
