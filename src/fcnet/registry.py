"""Turning a name, a config dict or an instance into an object, the way Keras' ``get`` functions do."""

__all__ = ["resolve"]


def resolve(identifier, base, classes, kind, aliases=None):
    """An instance of ``base`` from ``identifier``.

    Parameters
    ----------
    identifier : str, dict or base instance
        A registered name, ``{"name": ..., **constructor arguments}``, or an instance (returned as is).
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
    name = (aliases or {}).get(name, name)
    if not isinstance(name, str) or name not in classes:
        raise ValueError(f"unknown {kind} {name!r}; choose from {', '.join(classes)}")
    return classes[name](**config)
