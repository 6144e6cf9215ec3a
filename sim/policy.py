"""Policies as plain tensors: export a trained agent to rows (name, dtype, shape, bytes) and rebuild it
from them with ``torch.frombuffer``. Nothing stored is ever unpickled or executed, so a policy from someone
else's lake is data, not code. Also: the greedy rollout that backtests a policy on any stretch of bars.

A policy is anyone's input: :func:`check_rows` compares every tensor's dtype, shape and byte count with the
network its settings describe (:func:`param_shapes`, pure arithmetic) before a value is decoded or a network
is built, so a crafted policy is refused in one line naming the tensor, and never allocates more than it
stores.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .engine import Execution, Result, run
from .env import Market, TradingEnv
from .ppo import Agent

# every dtype the ``tensors`` artifact type allows (a test keeps the two lists equal)
DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int8": 1, "int16": 2, "int32": 4, "int64": 8}
ITEMSIZE |= {"uint8": 1, "bool": 1}


def to_rows(agent: Agent, extra: dict[str, np.ndarray] | None = None) -> dict[str, list[Any]]:
    """Columns name, dtype, shape, data (C-order little-endian bytes) of every parameter and ``extra`` array."""
    rows: dict[str, list[Any]] = {"name": [], "dtype": [], "shape": [], "data": []}
    items = [(f"param.{k}", v.detach().cpu().numpy()) for k, v in agent.state_dict().items()]
    items += [(k, np.asarray(v)) for k, v in sorted((extra or {}).items())]
    for name, arr in items:
        arr = np.ascontiguousarray(arr)
        if arr.dtype.name not in DTYPES:
            raise ValueError(f"tensor {name}: dtype {arr.dtype} is not stored")
        rows["name"].append(name)
        rows["dtype"].append(arr.dtype.name)
        rows["shape"].append(list(arr.shape))
        rows["data"].append(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return rows


def _check_row(name: Any, dtype: Any, shape: Any, data: Any) -> None:
    """One tensor row's dtype, shape and byte count, before anything is decoded."""
    if dtype not in DTYPES:
        raise ValueError(f"tensor {name}: unsupported dtype {dtype!r}")
    if not isinstance(shape, list | tuple) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ValueError(f"tensor {name}: shape must be a list of whole numbers, not {shape!r}")
    if any(d < 0 for d in shape):
        raise ValueError(f"tensor {name}: shape {list(shape)} has a negative size")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"tensor {name}: data must be bytes, not {type(data).__name__}")
    want = math.prod(shape) * ITEMSIZE[dtype]  # Python ints: no overflow on absurd shapes
    if len(data) != want:
        raise ValueError(f"tensor {name}: {len(data)} bytes do not hold shape {list(shape)} of {dtype} ({want} bytes)")


def from_rows(rows: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    """Arrays by name, checked against their declared dtype, shape and byte count (float16 and bfloat16 are
    widened to float32 exactly)."""
    out = {}
    for name, dtype, shape, data in zip(rows["name"], rows["dtype"], rows["shape"], rows["data"], strict=True):
        _check_row(name, dtype, shape, data)
        if dtype == "bfloat16":  # no numpy dtype: the top half of a float32, widened exactly
            bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
        if arr.size != int(np.prod(shape)):
            raise ValueError(f"tensor {name}: {arr.size} values do not fill shape {shape}")
        out[name] = arr.reshape(shape)
    return out


def param_shapes(obs_dim: int, nvec: tuple[int, ...], hidden: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Name and shape of every parameter of ``Agent(obs_dim, nvec, hidden)`` as stored (``param.<key>``),
    computed without building it (a test keeps it equal to the real state dict)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for net, out in (("critic", 1), ("actor", sum(nvec))):
        width = obs_dim
        k = 0
        for h in (*hidden, out):
            shapes[f"param.{net}.{k}.weight"] = (h, width)
            shapes[f"param.{net}.{k}.bias"] = (h,)
            width = h
            k += 2  # each hidden Linear is followed by a Tanh
    return shapes


def check_rows(rows: dict[str, list[Any]], expected: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The ``expected`` tensors of ``rows`` decoded, once every row's dtype, shape and bytes are checked and
    every expected tensor is there with its exact shape; floats must be finite. Raises ValueError naming the
    first tensor that is wrong. Other tensors (not ``param.*``) are ignored."""
    names = rows.get("name", [])
    by_name = {}
    for i, name in enumerate(names):
        if name in by_name:
            raise ValueError(f"tensor {name}: stored twice")
        by_name[name] = i
    for name, i in by_name.items():
        _check_row(name, rows["dtype"][i], rows["shape"][i], rows["data"][i])
        if str(name).startswith("param.") and name not in expected:
            raise ValueError(f"tensor {name}: not a parameter of the network its settings describe")
    for name, shape in expected.items():
        if name not in by_name:
            raise ValueError(f"tensor {name}: missing")
        got = tuple(rows["shape"][by_name[name]])
        if got != shape:
            raise ValueError(f"tensor {name}: shape {list(got)}, expected {list(shape)} from the policy's settings")
    picked = {k: [rows[k][by_name[n]] for n in expected] for k in ("name", "dtype", "shape", "data")}
    arrays = from_rows(picked)
    for name, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"tensor {name}: holds NaN or infinite values")
    return arrays


def load_agent(arrays: dict[str, np.ndarray], obs_dim: int, nvec: tuple[int, ...], hidden: tuple[int, ...]) -> Agent:
    """Rebuild the network and copy the stored parameters in (shapes must match exactly)."""
    agent = Agent(obs_dim, nvec, hidden)
    state = agent.state_dict()
    loaded = {}
    for key, ref in state.items():
        arr = arrays.get(f"param.{key}")
        if arr is None or tuple(arr.shape) != tuple(ref.shape):
            raise ValueError(f"policy tensor param.{key} is missing or has the wrong shape")
        loaded[key] = torch.from_numpy(np.array(arr, dtype=np.float32))
    agent.load_state_dict(loaded)
    agent.eval()
    return agent


def rollout(agent: Agent, market: Market, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Greedy actions from bar ``start`` to ``end``: per-bar targets, stop-losses, take-profits (NaN: no
    order) over bars ``start..end``, and the final equity the environment reported."""
    env = TradingEnv(None, market=market, split="validation")
    n = end - start + 1
    targets = np.full(n, np.nan)
    sl = np.full(n, np.nan)
    tp = np.full(n, np.nan)
    obs, info = env.reset(options={"start": start, "end": end})
    equity = info["equity"]
    k = 0
    with torch.no_grad():
        while True:
            chosen = agent.greedy(torch.as_tensor(obs).unsqueeze(0))[0].numpy()
            # a Discrete policy has one categorical: its single output is the flattened action
            act: Any = int(chosen[0]) if market.config.action_space == "discrete" else chosen
            obs, _, term, trunc, info = env.step(act)
            if info["target"] is not None:
                targets[k] = info["target"]
                sl[k] = np.nan if info["stop_loss"] is None else info["stop_loss"]
                tp[k] = np.nan if info["take_profit"] is None else info["take_profit"]
            equity = info["equity"]
            k += 1
            if term or trunc or k >= n - 1:
                break
    return targets, sl, tp, equity


def backtest(agent: Agent, market: Market, start: int, end: int) -> Result:
    """The policy's greedy orders over bars ``start..end``, run through the simulator (target mode)."""
    targets, sl, tp, _ = rollout(agent, market, start, end)
    part = market.bars.slice(start, end + 1)
    ex: Execution = market.config.execution
    return run(part, targets, ex, mode="target", stop_loss=sl, take_profit=tp)
