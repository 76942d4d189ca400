#!/usr/bin/env python3
"""Load a charrnn checkpoint into the tutorial's model built with Keras, and sample from it.

    python3 tools/keras_sample.py runs/a --prime "ROMEO: " --length 500
    python3 tools/keras_sample.py runs/a/step-000001720 --prime "ROMEO: " --logits   # JSON, for tests

CHECKPOINT is a step directory or a --checkpoint-dir (its newest step directory is used). The model is
Embedding -> GRU (reset_after=True) or LSTM, stacked as trained -> Dense, with Keras's own layers; the weights
come from model.safetensors by their Keras names (embedding/embeddings, gru/kernel, gru_1/kernel, ...) and the
sizes and vocabulary from checkpoint.json. Any Keras 3 backend does; without KERAS_BACKEND set, the first of
TensorFlow, JAX and PyTorch that is installed is used. Needs `pip install keras safetensors numpy` and a backend
(`jax[cpu]` is the smallest). Sampling uses NumPy's random generator, so its text differs from
`charrnn generate`'s for the same seed; the logits are the same.
"""
import argparse
import importlib.util
import json
import os
import sys

if "KERAS_BACKEND" not in os.environ:
    for backend in ("tensorflow", "jax", "torch"):
        if importlib.util.find_spec(backend):
            os.environ["KERAS_BACKEND"] = backend
            break

import keras  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402


def step_directory(path):
    if os.path.exists(os.path.join(path, "checkpoint.json")):
        return path
    steps = sorted(d for d in os.listdir(path) if d.startswith("step-") and os.path.exists(os.path.join(path, d, "checkpoint.json")))
    if not steps:
        sys.exit(f"{path}: no checkpoint")
    return os.path.join(path, steps[-1])


def build(config, weights):
    """The model as a stateful step function: (ids [B, T], states...) -> (logits [B, T, V], states...)."""
    cell, layers, units = config.get("cell", "gru"), config.get("layers", 1), config["units"]
    ids = keras.Input(shape=(None,), dtype="int32")
    embedding = keras.layers.Embedding(config["vocab"], config["embed"], name="embedding")
    x = embedding(ids)
    inputs, outputs, recurrent = [ids], [], []
    for l in range(layers):
        name = cell if l == 0 else f"{cell}_{l}"
        if cell == "gru":
            layer = keras.layers.GRU(units, return_sequences=True, return_state=True, reset_after=True, name=name)
            state = [keras.Input(shape=(units,))]
        else:
            layer = keras.layers.LSTM(units, return_sequences=True, return_state=True, name=name)
            state = [keras.Input(shape=(units,)), keras.Input(shape=(units,))]
        x, *final = layer(x, initial_state=state)
        inputs += state
        outputs += final
        recurrent.append((layer, name))
    dense = keras.layers.Dense(config["vocab"], name="dense")
    model = keras.Model(inputs, [dense(x)] + outputs)

    embedding.set_weights([weights["embedding/embeddings"]])
    for layer, name in recurrent:
        layer.set_weights([weights[f"{name}/kernel"], weights[f"{name}/recurrent_kernel"], weights[f"{name}/bias"]])
    dense.set_weights([weights["dense/kernel"], weights["dense/bias"]])
    return model, len(inputs) - 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--prime", default=None, help="text to start from (default: the vocabulary's first letter)")
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logits", action="store_true", help="print the logits after each prime character as JSON and stop")
    args = parser.parse_args()

    directory = step_directory(args.checkpoint)
    manifest = json.load(open(os.path.join(directory, "checkpoint.json")))
    vocabulary = [chr(c) for c in manifest["vocabulary"]]
    index = {ch: i for i, ch in enumerate(vocabulary)}
    model, state_count = build(manifest["config"], load_file(os.path.join(directory, "model.safetensors")))

    prime = args.prime if args.prime is not None else next((c for c in vocabulary if c.isalpha()), vocabulary[0])
    unknown = [c for c in prime if c not in index]
    if unknown:
        sys.exit(f"character {unknown[0]!r} is not in the model's vocabulary")
    def run(ids, states):
        """Logits [T, V] for one row's `ids` and its states after them, all as NumPy arrays."""
        logits, *states = model.predict_on_batch([np.array([ids], dtype="int32")] + states)
        return np.asarray(logits)[0], [np.asarray(s) for s in states]

    units = manifest["config"]["units"]
    logits, states = run([index[c] for c in prime], [np.zeros((1, units), dtype="float32") for _ in range(state_count)])
    if args.logits:
        print(json.dumps({"prime": prime, "backend": keras.backend.backend(), "logits": logits.tolist()}))
        return

    rng = np.random.default_rng(args.seed)
    out = [prime]
    for _ in range(args.length):
        scaled = logits[-1].astype("float64") / args.temperature
        p = np.exp(scaled - scaled.max())
        choice = int(rng.choice(len(vocabulary), p=p / p.sum()))
        out.append(vocabulary[choice])
        logits, states = run([choice], states)
    print("".join(out))


if __name__ == "__main__":
    main()
