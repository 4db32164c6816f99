"""One registry per kind of formula: the names users type, the classes they make, and what an engine or an
exporter may look up in them.

Each kind of formula (:mod:`fcnet.activations`, :mod:`fcnet.losses`, :mod:`fcnet.optimizers`,
:mod:`fcnet.schedules`) keeps its classes in one :class:`Registry`, and :mod:`fcnet.options` keeps the training
options of a model (dropout, batch normalization, penalties, clipping, ...) in another. Engines and the ONNX
exporter declare what they cover as allow-lists over these names (:class:`fcnet.engines.base.Support`) and
refuse everything else with a reason, so a formula registered here and not yet written in an engine is refused,
never run as something else; ``tests/engines/test_parity.py`` walks every registry on every engine.
"""

from collections.abc import Mapping

__all__ = ["Registry", "resolve"]


class Registry(Mapping):
    """``name → class`` of one kind of formula (a read-only mapping, plus :meth:`register`).

    Parameters
    ----------
    kind : str
        What the objects are, for error messages ("activation").
    classes : iterable of type
        Each with a class attribute ``name``, unique in the registry.
    aliases : dict, optional
        Other names → registered names (``"mean_squared_error"`` → ``"mse"``).
    """

    def __init__(self, kind, classes, aliases=None):
        self.kind, self._classes, self.aliases = kind, {}, dict(aliases or {})
        for cls in classes:
            self.register(cls)

    def register(self, cls):
        """Add ``cls`` under ``cls.name`` (usable as a class decorator); a taken name is refused."""
        if not isinstance(getattr(cls, "name", None), str) or not cls.name:
            raise ValueError(f"a registered {self.kind} needs a class attribute 'name'")
        if cls.name in self._classes:
            raise ValueError(f"{self.kind} {cls.name!r} is already registered")
        self._classes[cls.name] = cls
        return cls

    def unregister(self, name):
        """Remove ``name`` (what :meth:`register` added); a name that is not there raises KeyError."""
        del self._classes[name]

    def __getitem__(self, name):
        return self._classes[name]

    def __iter__(self):
        return iter(self._classes)

    def __len__(self):
        return len(self._classes)

    def get(self, identifier, base):
        """An instance of ``base`` from a name, a config dict or an instance (see :func:`resolve`)."""
        return resolve(identifier, base, self._classes, self.kind, self.aliases)

    def is_exact(self, obj):
        """Whether ``obj`` is an instance of exactly the class registered under its name (not a subclass, which may
        override the formulas an engine transcribes)."""
        return self._classes.get(getattr(obj, "name", None)) is type(obj)


def resolve(identifier, base, classes, kind, aliases=None):
    """An instance of ``base`` from ``identifier``.

    Parameters
    ----------
    identifier : str, dict or base instance
        A registered name or class name in any case (``"adam"``, ``"Adam"``), ``{"name": ...,
        **constructor arguments}``, or an instance (returned as is).
    classes : dict
        Name → class.
    kind : str
        What the objects are, for the error message.
    aliases : dict, optional
        Other names → registered names.

    Raises
    ------
    ValueError
        An unknown name, listing the valid ones.
    """
    if isinstance(identifier, base):
        return identifier
    config = dict(identifier) if isinstance(identifier, dict) else {"name": identifier}
    name = config.pop("name", None)
    names = {key.lower(): cls for key, cls in classes.items()}
    names.update({cls.__name__.lower(): cls for cls in classes.values() if cls.__name__.lower() not in names})
    names.update({alias.lower(): classes[target] for alias, target in (aliases or {}).items()})
    cls = names.get(name.lower()) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown {kind} {name!r}; choose from {', '.join(classes)}")
    return cls(**config)
