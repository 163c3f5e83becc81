"""Cost of the plugin loop: SPD decode time through `generate` vs. the same SPD work inlined.

The inlined loop below does exactly what `generate` + `strategies.spd` do (same canvas, same forwards,
same promotion, convergence and commit, finished rows dropped) with no hooks, no state object and no
contract checks; both must produce the same tokens and NFE. Target: ratio <= 1.05.

    python benchmarks/hook_overhead.py [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import torch

import _common as C
from plugins.embedders import hybrid
from workbench.decoding.loop import generate, predict
from workbench.decoding.registry import make_manager
from workbench.decoding.state import DecodeConfig

TAU_DEC, TAU_ACC = 0.5, 0.9


@torch.no_grad()
def inlined_spd(model, prompts, config: DecodeConfig):
    """SPD without the plugin machinery, written as lean as a hand-made decoder. Returns (ids, nfe) per row."""
    n, p_len, g_len, bs = len(prompts), max(map(len, prompts)), config.max_new_tokens, config.block_size
    table, e_mask, mask_id = model.embedding_table(), model.mask_embedding(), model.mask_id
    device = table.device
    norms = table.float().norm(dim=-1)
    canvas = torch.full((n, p_len + g_len), mask_id, dtype=torch.long, device=device)
    valid = torch.ones(n, p_len + g_len, dtype=torch.bool, device=device)
    for i, prompt in enumerate(prompts):
        pad = p_len - len(prompt)
        canvas[i, :pad], valid[i, :pad] = model.pad_id, False
        canvas[i, pad:p_len] = torch.tensor(prompt)
    block_ids = torch.tensor([0] * p_len + [1 + j // bs for j in range(g_len)], device=device).expand(n, -1)
    nfe = torch.zeros(n, dtype=torch.long)
    alive = torch.ones(n, dtype=torch.bool)
    decoded = [0] * n
    for start in range(0, g_len, bs):
        end = min(start + bs, g_len)
        rows = alive.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        lo, hi, length, b = p_len + start, p_len + end, end - start, rows.numel()
        stop = hi if model.block_causal else p_len + g_len
        prefix = table[canvas[rows, :lo]]
        suffix = e_mask.expand(b, stop - hi, table.shape[1])
        bids, vals = block_ids[rows, :stop], valid[rows, :stop]
        pos = torch.arange(length, device=device)
        is_mask = torch.ones(b, length, dtype=torch.bool, device=device)
        top = torch.full((b, length), mask_id, device=device)
        conf = torch.zeros(b, length, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        steps = torch.zeros(b, dtype=torch.long, device=device)
        ids, prev_top, step, running_rows = top, None, 0, b
        while running_rows:
            everyone = running_rows == b
            run = ~done
            soft = hybrid(table[top], e_mask, conf, top_norm=norms[top])
            embeds = torch.where(is_mask[..., None], e_mask, soft)
            x = torch.cat([prefix, embeds, suffix], dim=1)
            if everyone:
                logits = model.denoise(x, block_ids=bids, valid=vals)[:, lo:hi]
            else:
                logits = model.denoise(x[run], block_ids=bids[run], valid=vals[run])[:, lo:hi]
            step += 1
            steps = steps + (1 if everyone else run.long())
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            logits.select(-1, mask_id).fill_(float("-inf"))  # MASK is never a prediction (the core's rule)
            t, c, _ = predict(logits, 0.0, None, [], False)
            prev_top = top if step > 1 else None
            top, conf = (t, c) if everyone else (top.index_put((run,), t), conf.index_put((run,), c))
            open_ = is_mask & run[:, None]
            first = open_.to(torch.uint8).argmax(-1, keepdim=True)
            ok = (open_ & (conf >= TAU_DEC)) | (pos < first)
            promoted = (ok.cummin(-1).values | (pos == first)) & open_
            is_mask = is_mask & ~promoted
            stable = torch.zeros(b, dtype=torch.bool, device=device) if prev_top is None else \
                ~(((top != prev_top) & ~is_mask).any(-1) | promoted.any(-1))
            confident = (conf >= TAU_ACC).all(-1)
            finishing = run if step >= config.cap else run & (stable | confident)
            finished = int(finishing.sum())
            if finished:
                ids = torch.where(finishing[:, None], top, ids)
                is_mask = is_mask & ~finishing[:, None]
                done = done | finishing
                running_rows -= finished
        nfe[rows] += steps.cpu()
        canvas[rows, lo:hi] = ids
        for r in rows.tolist():
            decoded[r] = end
        alive[rows[(ids == model.eos_id).any(-1).cpu()]] = False
    out = []
    for i in range(n):
        row = canvas[i, p_len:p_len + decoded[i]].tolist()
        out.append(row[:row.index(model.eos_id) + 1] if model.eos_id in row else row)
    return out, nfe.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    C.add_precision_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = C.model(dtype=args.dtype, hidden_size=args.hidden, num_layers=args.layers)
    config = DecodeConfig(block_size=16, max_new_tokens=64, cache="none")  # the inlined loop has no cache
    prompts = [[4 + (7 * i + j) % 80 for j in range(n)] for i, n in enumerate((12, 20, 7, 16))]

    def plugin_loop():
        return generate(model, prompts, make_manager("spd"), config)

    with torch.no_grad():
        results = plugin_loop()
        ids, nfe = inlined_spd(model, prompts, config)
        assert [r.ids for r in results] == ids and [r.nfe for r in results] == nfe, "loops disagree"
        plugin_t, inline_t = [], []
        for _ in range(args.repeats):  # interleaved, so machine load drifts affect both alike
            plugin_t.append(C.timed(plugin_loop)[1])
            inline_t.append(C.timed(lambda: inlined_spd(model, prompts, config))[1])
    p, i = statistics.median(plugin_t), statistics.median(inline_t)
    print(f"device: {C.machine()}; {C.params(model)}, {model.embedding_table().dtype}")
    print(f"SPD, {len(prompts)} prompts, {config.max_new_tokens} new tokens, block {config.block_size}, "
          f"NFE per row {nfe}, threads {args.threads}")
    paired = statistics.median(a / b for a, b in zip(plugin_t, inline_t))
    print(f"plugin loop median {p * 1e3:.1f} ms, inlined median {i * 1e3:.1f} ms, ratio {p / i:.3f} "
          f"(median of paired ratios {paired:.3f}; target <= 1.05)")


if __name__ == "__main__":
    main()
