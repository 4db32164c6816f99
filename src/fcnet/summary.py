"""The text of :meth:`fcnet.model.Sequential.summary`: Keras' table of layers, output shapes and parameters."""

__all__ = ["summary_text"]


def summary_text(model):
    """Keras' ``model.summary()`` table of ``model``'s layers, output shapes and parameters, as text."""
    rows = [("Layer (type)", "Output Shape", "Activation", "Param #")]
    for i, layer in enumerate(model.layers):
        n = layer.params["W"].size + layer.params["b"].size if model.built else 0
        if layer.dropout:
            rows.append((f"dropout_{i} (Dropout)", f"(None, {layer.input_dim})", f"rate {layer.dropout:g}", "0"))
        rows.append((f"{layer.name or f'dense_{i}'} (Dense)", f"(None, {layer.units})",
                     layer.activation.name, f"{n:,}"))
        if layer.batch_norm is not None:
            rows.append((f"batch_normalization_{i} (BatchNormalization)", f"(None, {layer.units})", "",
                         f"{4 * layer.units:,}"))
    widths = [max(len(r[c]) for r in rows) + 2 for c in range(4)]
    rule = "─" * sum(widths)

    def fmt(row):
        return "".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()

    total, trained = model.count_params(), sum(p.size for p in model.parameters)
    counts = [f"Total params: {total:,}"]
    if total > trained:
        counts += [f"Trainable params: {trained:,}", f"Non-trainable params: {total - trained:,}"]
    lines = [f'Model: "{model.name}"', rule, fmt(rows[0]), rule, *map(fmt, rows[1:]), rule, *counts,
             f"Input: (None, {model.input_dim})", f"dtype: {model.dtype}"]
    return "\n".join(lines)
