"""Turning a name, a config dict or an instance into an object, the way Keras' ``get`` functions do."""

__all__ = ["resolve"]


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
