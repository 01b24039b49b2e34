"""Inert records: values the format stores by name and that nothing ever imports or calls."""

from __future__ import annotations

import dataclasses
from typing import Any


class _NoState:
    """The ``state`` of an :class:`Object` that had none applied (distinct from ``None``)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "NO_STATE"

    def __reduce__(self):
        return "NO_STATE"


NO_STATE = _NoState()


@dataclasses.dataclass(eq=True)
class Object:
    """An instance of a class that the producer did not know, recorded as data (spec §3.8):
    the ``module`` and qualified ``name`` of its class or callable, the positional ``args`` and
    keyword ``kwargs`` it was called with, the ``state`` applied to it (:data:`NO_STATE`
    when none was), and for list or dict subclasses the ``listitems`` appended and the
    ``dictitems`` set after construction. tensorseal never imports ``module`` or calls
    anything: restore such values yourself if you trust them.
    """

    module: str
    name: str
    args: list = dataclasses.field(default_factory=list)
    kwargs: dict = dataclasses.field(default_factory=dict)
    state: Any = NO_STATE
    listitems: list = dataclasses.field(default_factory=list)
    dictitems: dict = dataclasses.field(default_factory=dict)

    @property
    def has_state(self) -> bool:
        return self.state is not NO_STATE

    def __hash__(self):
        # Consistent with == (equal records have equal module and name), so records can be
        # dict keys and set elements, as the format allows.
        return hash((Object, self.module, self.name))


@dataclasses.dataclass(frozen=True)
class Global:
    """A class or function used as a value, recorded by name (spec §3.8). Never imported."""

    module: str
    name: str


@dataclasses.dataclass(frozen=True)
class Typed:
    """A registered typed value kept as a record instead of being built: with
    ``framework="numpy"`` the torch values (``torch.Size``, ``torch.dtype``, ``torch.device``)
    load as ``Typed("torch.Size", (2, 3))``, ``Typed("torch.dtype", "float32")``,
    ``Typed("torch.device", "cuda:0")``, so torch is never imported. Saving one writes the
    typed value back.
    """

    type: str
    value: Any


@dataclasses.dataclass(frozen=True, eq=False)
class TensorInfo:
    """What :class:`tensorseal.Checkpoint` knows about a tensor before reading it."""

    name: str
    dtype: str
    shape: tuple
    kind: str | None
    requires_grad: bool
    nbytes: int
    attrs: dict = dataclasses.field(default_factory=dict)
